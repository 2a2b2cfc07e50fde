"""Every table module, imported so ``Base.metadata`` is complete (Alembic, tests).

A new module of tables adds its import here.
"""

from models import tables  # noqa: F401
from models.base import Base

metadata = Base.metadata
