from .exact_upsample import fast_path_available, upsample_bilinear_exact

__all__ = ['fast_path_available', 'upsample_bilinear_exact']
