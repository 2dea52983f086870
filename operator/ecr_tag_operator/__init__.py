"""ecr-tag-operator: keeps Amazon ECR tags on the image an EcrImageTag names."""

__version__ = "0.1.0"
