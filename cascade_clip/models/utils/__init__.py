from .exact_upsample import fast_path_available, fast_path_checks, upsample_bilinear_exact

__all__ = ['fast_path_available', 'fast_path_checks', 'upsample_bilinear_exact']
