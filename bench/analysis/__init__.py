"""The statistical report (`make report`, bench/report.py): statistics (stats.py, power.py), row
selection from the registry (select.py), figures (figures.py), the sections (results_sections.py,
sweep_sections.py, evp.py) and what they say about their own certainty (table_notes.py: diverged
runs, budget.py, power.py, testnoise.py; aggregate.py; diverged.py)."""
