from .cascade_head import ATMSingleHeadSeg

__all__ = ['ATMSingleHeadSeg']
