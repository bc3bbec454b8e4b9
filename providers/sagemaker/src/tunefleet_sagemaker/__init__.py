"""tunefleet's SageMaker provider: training jobs and endpoints through boto3."""
