"""models.funnel.names repeats the KPIs' names and units for models.playbook (which must not
import models.funnel.kpis); models.funnel.kpis stays the source of truth."""

from models.funnel import kpis, names


def test_names_and_units_agree_with_the_kpi_definitions() -> None:
    assert names.KPI_NAMES == kpis.KPI_NAMES
    assert {name: d.unit for name, d in kpis.KPIS.items()} == names.KPI_UNITS


def test_playbook_does_not_import_the_kpi_machinery() -> None:
    import subprocess
    import sys

    code = "import sys, models.playbook; print('models.funnel.kpis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
