"""SmartECG features: pixels -> arrays -> vectors. No MLflow and no engines in here."""
