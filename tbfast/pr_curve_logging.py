"""Writer methods for PR curves (filled in by the PR-curve capability)."""


class PRCurveLogging:
    ACCELERATED = ()
