"""placeholder"""
class BitExactReport: pass
def check_bit_exact(*a, **k): raise NotImplementedError
