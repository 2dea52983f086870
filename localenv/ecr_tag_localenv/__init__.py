"""Local environment: the ECR emulator and the real control plane, for tests and the demo."""
