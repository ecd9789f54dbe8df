"""Display-set records (design.md §5): per page view the click history, shown set and click."""
