"""The training runner (filled by the runner issue)."""

__all__: list[str] = []
