"""Static checks: the template, the state machine definition and the code, without running the product."""
