"""Running a model: device and precision choice, padding and normalisation, scoring, the metric, cost."""
