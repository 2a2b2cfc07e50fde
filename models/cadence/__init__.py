"""The cadence: check-in requests, reminders, escalations, digests and recap-due, planned as
notifications with idempotency keys, and the delivery bookkeeping around them.

One module per reason to change (this package imports none of them, so loading the tables
loads nothing else):

==================  ===========================================================================
module              what it owns
==================  ===========================================================================
``tables``          the channel and notification tables and their enums
``policy``          when to remind and escalate, and the check-in cadence (defaults, a flow's
                    parameters, a playbook's ``settings``)
``urls``            the apprise URLs we accept per channel kind, masking their secrets for
                    display, resolving ``env:``/``secret:`` indirections
``channels``        configuring channels: who may, adding, listing, removing (audit-logged)
``directory``       who gets what, where: people, their leads and managers, their channels
``planning``        what every planner shares: the unfinished items of cycles in Execute, the
                    message to plan, storing it once per key (insert-ignore)
``reminders``       due soon or overdue, to the owner
``escalations``     overdue past a grace period, to the owner's lead, then a manager
``late_leads``      leads of the SLA breach ledger late past a threshold, to the managers
``checkins``        confidence flags from the facts, and check-in requests per cadence period
``digest``          a cycle's weekly digest: progress, KPIs, risks, what is due next week
``recap_due``       the system opens Recap when a cycle's period is over, and tells the point
                    persons
``grouped``         a person's reminders (or escalations) on a channel as one message a day
``outbox``          delivery bookkeeping: claiming, marking sent or failed, reading the log
==================  ===========================================================================

Every planner is set-based: it runs a constant number of queries whatever the number of cycles
and action items (one to find the candidates, a few to load the people and channels, then
batched ``INSERT ... ON CONFLICT (key) DO NOTHING RETURNING``). Planning the same day twice
inserts nothing the second time, because every message has a deterministic key:

=============================================================  ================================
key (each delivery adds ``#c<channel id>``)                    planned
=============================================================  ================================
``checkin:<cycle>:p<owner>:n<period>``                         once per cadence period
``reminder:<action>:<due date>:soon:p<owner>``                 once when due within N days
``reminder:<action>:<due date>:overdue:p<owner>``              once when overdue
``escalation:<action>:<due date>:lead:p<lead>``                overdue past the grace period
``escalation:<action>:<due date>:manager:p<manager>``          after the second grace period
``late-lead:<breach>:p<manager>``                              once per late lead and manager
``digest:<cycle>:<ISO week>``                                  once a week per cycle
``recap-due:<cycle>:<period end>:opened|blocked:p<person>``    once per outcome
=============================================================  ================================

Keys carry the due date and the person, not the run date: moving a due date or reassigning an
item re-arms its reminders, and a day without a run loses nothing (the next run still finds
the item in the same state).

Delivery (see ``flows/notify.py``) claims the rows of a batch of (channel, person) pairs
(``pending`` → ``sending``), sends a person's reminders or escalations on a channel as one
message listing every item (:mod:`models.cadence.grouped`; other kinds one message each), and
marks the message's rows ``sent`` at once; see :func:`models.cadence.outbox.claim_batch` for
the at-least-once window.

Like every service, none of these functions commits: the caller owns the unit of work.
"""
