"""Optional bridges to other libraries; each needs its own extra installed."""
