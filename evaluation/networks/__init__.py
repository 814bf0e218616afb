"""Networks of the released metric weights, with their exact parameter names."""
