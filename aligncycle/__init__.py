"""aligncycle: run sales–marketing alignment cycles (identify, plan, execute, recap)."""

__version__ = "0.1.0"
