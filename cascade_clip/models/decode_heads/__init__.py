from .cascade_head import ATMSingleHeadSeg, HeadInputs

__all__ = ["ATMSingleHeadSeg", "HeadInputs"]
