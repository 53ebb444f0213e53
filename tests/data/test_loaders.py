import numpy as np
import pytest
import torch
from erasus.data import IndexedDataset, as_dataset, as_loader, num_samples, split_indexed, subset
from erasus.errors import ErasusTypeError, InvalidInputError
from torch.utils.data import DataLoader, TensorDataset


def test_numpy_pairs_become_float32_tensor_batches():
    x = np.arange(20, dtype=np.float64).reshape(10, 2)
    y = np.arange(10)
    loader = as_loader((x, y), batch_size=4)
    batches = list(loader)
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    assert batches[0][0].dtype == torch.float32 and batches[0][1].dtype == torch.int64
    np.testing.assert_array_equal(torch.cat([b[0] for b in batches]).numpy(), x.astype(np.float32))
    assert num_samples((x, y)) == 10 and num_samples(torch.zeros(7, 3)) == 7


def test_loader_returned_as_is_unless_changed():
    ds = TensorDataset(torch.arange(10))
    dl = DataLoader(ds, batch_size=3)
    assert as_loader(dl) is dl
    assert as_loader(dl, batch_size=3) is dl
    rebuilt = as_loader(dl, batch_size=5)
    assert rebuilt is not dl and rebuilt.batch_size == 5 and rebuilt.dataset is ds


def test_shuffle_is_seeded_permutation():
    x = torch.arange(50)
    def order(s):
        return torch.cat([b[0] for b in as_loader(x, batch_size=7, shuffle=True, seed=s)])

    a, b, c = order(3), order(3), order(4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.sort(a).values, x)


def test_indexed_dataset_yields_positions_for_weight_lookup():
    x = torch.randn(9, 2)
    y = torch.arange(9)
    weights = torch.linspace(0, 1, 9)
    seen = []
    for batch in as_loader(IndexedDataset((x, y)), batch_size=4, shuffle=True, seed=1):
        (bx, by), idx = split_indexed(batch)
        assert torch.equal(bx, x[idx]) and torch.equal(by, y[idx])
        torch.testing.assert_close(weights[idx], weights[by])  # y == position here
        seen.append(idx)
    assert sorted(torch.cat(seen).tolist()) == list(range(9))


def test_subset_keeps_given_order_and_validates():
    x = torch.arange(10) * 10
    s = subset(x, [7, 2, 5])
    assert [int(s[i][0]) for i in range(3)] == [70, 20, 50]
    with pytest.raises(InvalidInputError, match=r"\[0, 10\)"):
        subset(x, [3, 10])
    with pytest.raises(InvalidInputError, match="1-D integer"):
        subset(x, np.array([0.5]))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(InvalidInputError, match="first dimension"):
        as_dataset((np.zeros(3), np.zeros(4)))
    with pytest.raises(ErasusTypeError, match="cannot make a dataset"):
        as_dataset(42)
    with pytest.raises(InvalidInputError, match="batch_size"):
        as_loader(torch.zeros(3), batch_size=0)


def test_collate_of_keeps_a_loaders_own_collate():
    from torch.utils.data import default_collate

    from erasus.data import collate_of

    def custom(items):
        return len(items)

    assert collate_of(DataLoader(TensorDataset(torch.zeros(3)), collate_fn=custom)) is custom
    assert collate_of(torch.zeros(3)) is default_collate
