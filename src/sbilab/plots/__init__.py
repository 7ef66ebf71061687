"""All figures sbilab draws (matplotlib, Agg backend)."""
