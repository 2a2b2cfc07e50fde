"""Service layer: one module of verbs per domain object.

Every function takes a ``Session`` first and never commits: the caller owns the transaction
(``Store.unit_of_work()``). Refusals raise :mod:`models.errors` exceptions before writing.
"""
