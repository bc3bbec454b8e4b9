"""tunefleet-azureml: the Azure Machine Learning provider."""
