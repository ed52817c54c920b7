"""The statistical report (`make report`, bench/report.py): statistics (stats.py), row selection
from the registry (select.py), figures (figures.py) and the report's sections (sections.py)."""
