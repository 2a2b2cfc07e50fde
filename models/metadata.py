"""Every table module, imported so ``Base.metadata`` is complete (Alembic, tests).

A new module of tables adds its import here.
"""

from models import (  # noqa: F401
    accounts,
    agreement_tables,
    alignment_tables,
    breach_tables,
    tables,
)
from models.base import Base
from models.cadence import tables as cadence_tables  # noqa: F401
from models.funnel import tables as funnel_tables  # noqa: F401
from models.phases import dispatch as phase_dispatch  # noqa: F401

metadata = Base.metadata
