"""The run report: figures, pictures and the HTML page, read from a run folder."""
