"""The platform's policies: pure rules (`rules.py`) and the Pulumi CrossGuard pack (`__main__.py`)."""
