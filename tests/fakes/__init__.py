"""The one fake of the test suite: a scripted Anthropic Messages API (see model_server)."""
