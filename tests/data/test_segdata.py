

def test_masks_are_coloured_by_the_palette_and_void_is_black():
    import numpy as np

    from nni_seg.data import colourize

    out = colourize(np.array([[0, 1], [2, 255]]), [(10, 20, 30), (40, 50, 60), (70, 80, 90)])
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert out.tolist() == [[[10, 20, 30], [40, 50, 60]], [[70, 80, 90], [0, 0, 0]]]
