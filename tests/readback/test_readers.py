"""The shards as the ecosystem reads them: webdataset and stock open_clip training."""

import json
from argparse import Namespace

import pytest
from inat_layout import make_inat_root
from optional import require

import vlconvert


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("readers")
    root = make_inat_root(tmp / "inat", per_class={"train": 5, "val": 2})
    out = tmp / "out"
    vlconvert.build("inat2021", str(root), str(out), shard_size=16, templates=["taxonomic_common", "scientific"])
    return out


def test_webdataset_reads_every_sample(shards):
    wds = require("webdataset")
    urls = sorted(str(p) for p in (shards / "train").glob("*.tar"))
    dataset = wds.WebDataset(urls, shardshuffle=False).decode("pil")
    seen = list(dataset)
    assert len(seen) == 60
    for sample in seen:
        assert sample["jpg"].size == (64, 48)
        assert sample["txt"].startswith("a photo of ") and sample["scientific.txt"].startswith("a photo of ")
        assert sample["json"]["label"] == sample["cls"]
        assert sample["json"]["class_name"] in sample["txt"]


def test_stock_open_clip_training_loader(shards):
    require("torch")
    open_clip = require("open_clip")
    data = require("open_clip_train.data")
    from torchvision import transforms

    sizes = json.loads((shards / "train" / "sizes.json").read_text())
    n_shards = len(sizes)
    args = Namespace(
        train_data=str(shards / "train" / f"train-{{000000..{n_shards - 1:06d}}}.tar"),
        train_num_samples=None,  # so the size must come from sizes.json
        train_data_upsampling_factors=None,
        dataset_resampled=False,
        seed=0,
        batch_size=6,
        workers=0,
        world_size=1,
    )
    tokenizer = open_clip.get_tokenizer("RN50")
    preprocess = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32), transforms.ToTensor()])
    info = data.get_wds_dataset(args, preprocess, is_train=True, epoch=0, tokenizer=tokenizer)
    assert info.dataloader.num_samples == sum(sizes.values()) == 60
    batches = list(info.dataloader)
    assert len(batches) == info.dataloader.num_batches == 10
    images, texts = batches[0]
    assert tuple(images.shape) == (6, 3, 32, 32) and tuple(texts.shape) == (6, 77)
    from open_clip.tokenizer import decode

    captions = [decode(t) for batch in batches for t in batch[1]]
    assert all(c.split()[3] in {"animalia", "plantae", "fungi"} for c in captions)  # "<start_of_text>a photo of <kingdom>"
    assert any("jorō spider" in c for c in captions)  # the tokenizer lower-cases, keeps the macron
