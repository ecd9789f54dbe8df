"""Display-set records (SPEC §5): per page view the click history, shown set and click."""
