from tests.kernels import other_capabilities


def test_other_kernel_sets_are_the_narrower_ones():
    assert other_capabilities("AVX512") == ["default", "avx2"]
    assert other_capabilities("AVX2") == ["default"]
    assert other_capabilities("DEFAULT") == []
    assert other_capabilities("SVE256") == ["default"]  # another architecture: the portable set
