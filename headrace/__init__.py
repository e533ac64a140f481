"""headrace package."""
