"""Shared fixtures: the ECR emulator process and the real control plane live in plugins of their own."""

pytest_plugins = ["tests.plugins.ecr_server", "tests.plugins.control_plane", "tests.plugins.operator_process"]
