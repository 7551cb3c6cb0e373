"""``OUT/README.md``: the build's dataset card, so the folder uploads to the Hugging Face Hub as it is.

Its YAML front matter is what the Hub and ``datasets.load_dataset(OUT)`` read: one
``default`` config with each split's ``<split>/*.tar``, the license, the size
bucket, task categories and tags.  The body says what a sample holds, how the
build was made and how to load it.  Everything comes from the finished manifest
and the adapter's optional ``license``/``citation`` attributes, never from the
clock or the machine, so two identical builds write identical cards.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping

import vlconvert.format as output_format

# The Hub's size_categories buckets, by upper bound (the last one is open).
_SIZE_BUCKETS = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                 (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
                 (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"), (1_000_000_000_000, "100B<n<1T"))
_IMAGE_MEMBER = {"jpg": "jpg", "webp": "webp"}  # --format → the one member it writes; "auto" may keep png/webp too


def write_card(fs, out_path: str, manifest: Mapping, source=None,
               image_members: Mapping[str, Mapping[str, int]] | None = None) -> dict:
    """Writes ``OUT/README.md`` for a complete ``manifest``; returns what the manifest's ``files`` records of it.

    ``source`` is the adapter (its ``license``, ``license_url``, ``license_note``, ``citation`` and ``homepage``
    are read where it has them); ``image_members`` counts each split's image members by
    extension, where the caller knows them (see :func:`image_members_note`)."""
    return output_format.write_text(fs, posixpath.join(out_path, output_format.CARD), card_text(manifest, source, image_members))


def size_category(samples: int) -> str:
    return next((name for bound, name in _SIZE_BUCKETS if samples < bound), "n>1T")


def hub_split_name(split: str) -> str:
    """``datasets`` allows only word characters in a split name (``\\w+(\\.\\w+)*``); a key may also hold ``-``."""
    return re.sub(r"\W", "_", split)


def image_members_note(counts: Mapping[str, int]) -> str | None:
    """A warning when one split's samples do not share one image member (``{"jpg": 990, "png": 10}``), else None.

    With ``--format auto`` an image that needs no change keeps its bytes and its format, so a split of
    mixed sources mixes ``jpg``, ``png`` and ``webp``.  open_clip and webdataset take any of them; the Hub's
    ``webdataset`` loader wants every sample to carry the same members and refuses such shards."""
    present = {ext: n for ext, n in sorted(counts.items()) if n}
    if len(present) < 2:
        return None
    listed = ", ".join(f"{n:,} `{ext}`" for ext, n in present.items())
    return (f"its images are {listed}: Hugging Face `datasets` needs one set of members in every sample and refuses "
            "these shards (rebuild with `--format jpg` for one image member); open_clip and webdataset read them")


def card_text(manifest: Mapping, source=None, image_members: Mapping[str, Mapping[str, int]] | None = None) -> str:
    splits = {s: info for s, info in manifest["splits"].items() if info["shards"]}
    adapter = manifest["adapter"]["name"]
    terms = _terms(source)
    lines = ["---", f"pretty_name: {_q(f'{adapter} with captions (vlconvert)')}", *_license_yaml(adapter, terms),
             "size_categories:", f"- {size_category(sum(s['written'] for s in manifest['splits'].values()))}",
             "task_categories:", "- zero-shot-image-classification", "- image-classification",
             "tags:", "- webdataset", "- vlconvert", "- image-text"]
    if splits:
        lines += ["configs:", "- config_name: default", "  data_files:"]
        for s in splits:
            lines += [f"  - split: {_q(hub_split_name(s))}", f"    path: {_q(f'{s}/*.tar')}"]
    lines += ["---", "", f"# {adapter} with captions", "", *_intro(manifest, adapter, terms["homepage"]), "",
              *_splits(manifest), "", *_members(manifest, image_members), "", *_made(manifest), "",
              *_loading(manifest, splits), "", *_files(), "", *_license(adapter, terms)]
    if terms["citation"]:
        lines += ["", "## Citation", "", "Cite the source dataset:", "", "```bibtex", terms["citation"].strip(), "```"]
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    # A JSON string is a YAML double-quoted scalar: any text is safe in the front matter this way.
    return json.dumps(text, ensure_ascii=False)


def _terms(source) -> dict[str, str]:
    # Optional attributes (adapters/_base.py): a plugin adapter may have none, or something else by these names.
    found = {k: getattr(source, k, "") for k in ("license", "license_url", "license_note", "citation", "homepage")}
    found = {k: v if isinstance(v, str) else "" for k, v in found.items()}
    return {k: v if k == "citation" else " ".join(v.split()) for k, v in found.items()}


def _license_yaml(adapter: str, terms: dict) -> list[str]:
    license_id = terms["license"] or "unknown"
    lines = [f"license: {_q(license_id)}"]
    if license_id == "other":  # the Hub asks for a name (a slug) and a link with "other"
        lines.append(f"license_name: {_q(re.sub(r'[^a-z0-9]+', '-', adapter.lower()).strip('-') + '-terms-of-use')}")
        if terms["license_url"]:
            lines.append(f"license_link: {_q(terms['license_url'])}")
    return lines


def _intro(manifest: Mapping, adapter: str, homepage: str) -> list[str]:
    written = sum(s["written"] for s in manifest["splits"].values())
    what = f"the `{adapter}` dataset" + (f" ({homepage})" if homepage else "")
    return [f"Image-classification data turned into captioned [webdataset](https://github.com/webdataset/webdataset) "
            f"shards by vlconvert {manifest['vlconvert_version']}, from {what}: {written:,} images of "
            f"{manifest['num_classes']:,} classes, each with a caption rendered from its class's names and taxonomy, its "
            "label and everything known about it. The shards train CLIP and LiT models as they are (open_clip's webdataset "
            "loader), and the side files serve zero-shot classification (CLIP_benchmark)."]


def _splits(manifest: Mapping) -> list[str]:
    lines = ["## Splits", "", "| split | samples | shards |", "| --- | --- | --- |"]
    renamed = []
    for s, info in manifest["splits"].items():
        lines.append(f"| `{s}` | {info['written']:,} | {len(info['shards']):,} |")
        if info["shards"] and hub_split_name(s) != s:
            renamed.append(f"`{s}` is `{hub_split_name(s)}` in the configs above (`datasets` allows no other characters)")
        elif not info["shards"]:
            renamed.append(f"`{s}` has no samples and is not in the configs above")
    errors, holdout = manifest["errors"]["count"], manifest.get("holdout")
    notes = renamed + ([f"{errors:,} records could not be converted; `errors.jsonl` lists each with its reason"] if errors else [])
    if holdout:
        kept = ", ".join(f"`{s}`" for s in holdout["kept_out_of"])
        notes.append(f"{len(holdout['classes']):,} classes are held out of {kept} for zero-shot evaluation "
                     "(the manifest's `holdout` names them)")
    return lines + (["", *(f"- {note}." for note in notes)] if notes else [])


def _members(manifest: Mapping, image_members: Mapping[str, Mapping[str, int]] | None) -> list[str]:
    templates = manifest["templates"]
    fixed = _IMAGE_MEMBER.get(manifest["image"]["format"])
    if fixed is None and image_members is not None:
        found = {ext for counts in image_members.values() for ext, n in counts.items() if n}
        fixed = next(iter(found)) if len(found) == 1 else None
    image = (f"| `{fixed}` | the image |" if fixed else
             "| `jpg`, `png` or `webp` | the image, one member in its stored format: JPEG unless the original "
             "PNG or WebP passed through unchanged (`--format auto`) |")
    primary = [t["name"] for t in templates if t["member"] == output_format.CAPTION_MEMBER]
    from_what = (f"a template drawn per sample from {', '.join(f'`{n}`' for n in primary)} (`caption_template` in `json` says which)"
                 if manifest.get("template_mix") else f"template `{primary[0]}`" if primary else "the first template")
    every = "every sample carries all of them" + ("" if fixed else "; only the image's extension may differ between samples")
    lines = ["## What each sample holds", "",
             f"A sample is consecutive tar members `KEY.<member>` sharing one key, in this order, and {every}:", "",
             "| member | what it holds |", "| --- | --- |", image,
             f"| `{output_format.CAPTION_MEMBER}` | the caption open_clip trains on, from {from_what} |"]
    lines += [f"| `{t['member']}` | the caption from template `{t['name']}` |" for t in templates
              if t["member"] != output_format.CAPTION_MEMBER]
    lines += [f"| `{output_format.METADATA_MEMBER}` | everything known about the sample: `key`, `split`, `label`, `class_name`, "
              "`common_name`, `taxonomy`, `class_fields`, `source`, `width`, `height`, the image's own `metadata`, "
              "`caption_template` |",
              f"| `{output_format.LABEL_MEMBER}` | the integer label: the line of `classnames.txt`, counting from 0 |"]
    notes = [f"- `{s}`: {note}." for s, counts in (image_members or {}).items() if (note := image_members_note(counts))]
    return lines + (["", "Image members differ between samples:", "", *notes] if notes else [])


def _made(manifest: Mapping) -> list[str]:
    adapter, image = manifest["adapter"], manifest["image"]
    options = ", ".join(f"`{k}={v}`" for k, v in adapter["options"].items()) or "none"
    if image["size"]:
        resized = f"resized to {image['size']} ({image['resize_mode']}{', upscaled' if image['upscale'] else ''})"
    else:
        resized = "at their original size"
    stored = {"auto": "original bytes kept where nothing changes, else JPEG", "jpg": "JPEG", "webp": "WebP"}.get(
        image["format"], image["format"])
    templates = ", ".join(f"`{t['name']}` ({t['origin'] if t['origin'] == 'built-in' else 'a template file'})"
                          for t in manifest["templates"])
    return ["## How it was made", "",
            f"- vlconvert {manifest['vlconvert_version']}, adapter `{adapter['name']}`, adapter options: {options}.",
            f"- Images {resized}; {stored}, quality {image['quality']}.",
            f"- Captions (Jinja templates over each class's names and taxonomy): {templates}.",
            f"- Each split shuffled with seed {manifest['seed']}, in shards of at most {manifest['shard_size']:,} samples.",
            f"- Zero-shot prompts: `{manifest['zeroshot']['prompts']}`; `classnames.txt` holds {manifest['zeroshot']['classnames_are']}.",
            "- `manifest.json` records every option, count and shard sha256; `vlconvert build --config manifest.json "
            "--out NEW` repeats the build from the same source data."]


def _loading(manifest: Mapping, splits: Mapping) -> list[str]:
    if not splits:
        return ["## Loading", "", "No split has samples."]
    files = ", ".join(f'"{hub_split_name(s)}": "{s}/*.tar"' for s in splits)
    training = next((s for s in splits if output_format.is_training_split(s)), next(iter(splits)))
    count = len(splits[training]["shards"])
    brace = f"{training}/{training}-{{{0:06d}..{count - 1:06d}}}.tar" if count > 1 else splits[training]["shards"][0]["name"]
    return ["## Loading", "",
            "From this folder, with Hugging Face `datasets` (columns are the member names, plus `__key__` and `__url__`):", "",
            "```python", "from datasets import load_dataset", "",
            f"ds = load_dataset(\"webdataset\", data_files={{{files}}})",
            "# or, through the configs above, from this folder or its Hub repository:",
            "ds = load_dataset(\"path/to/this/folder\")", "```", "",
            "Training with open_clip (without `--train-num-samples` it reads the count from `sizes.json`):", "",
            "```bash",
            f"python -m open_clip_train.main --dataset-type webdataset --train-data '{brace}' "
            f"--train-num-samples {splits[training]['written']} --model ViT-B-32",
            "```", "",
            f"Random access with wids (webdataset's indexed reader; shard URLs in `{output_format.wids_index_name(training)}` are "
            "relative to it, so open it by its path or URL):", "",
            "```python", "import wids", "",
            f"ds = wids.ShardListDataset(\"{training}/{output_format.wids_index_name(training)}\")",
            "sample = ds[0]  # {\"__key__\": ..., \".txt\": caption, \".json\": {...}, \".cls\": label, and the image}", "```"]


def _files() -> list[str]:
    f = output_format
    return ["## Files", "",
            f"- `{f.MANIFEST}`: options, counts per split and class, every shard with its size and sha256",
            f"- `{f.CLASSNAMES}` (line *i* names label *i*) and `{f.ZEROSHOT_TEMPLATES}` (prompts with `{{c}}`): "
            "zero-shot classification, as CLIP_benchmark reads them",
            f"- `{f.CLASSES}`: one JSON line per class with its names and taxonomy",
            f"- `{f.ERRORS}`: every record that is not in the shards, with its reason",
            f"- `<split>/{f.SIZES}`: samples per shard (open_clip); `<split>/<split>{f.WIDS_INDEX_SUFFIX}`: the wids shard index"]


def _license(adapter: str, terms: dict) -> list[str]:
    lines = ["## License", ""]
    if not terms["license"]:
        return lines + [f"vlconvert does not know the license of the `{adapter}` source data, so `license` above is "
                        "`unknown`: find the source's terms and state them here before publishing these shards."]
    text = f"License: `{terms['license']}`"
    if terms["license_url"]:
        text += f" (the source's terms: {terms['license_url']})"
    text += ". " + (terms["license_note"] or "")
    return lines + [text.strip(), "", "The captions and the `json` metadata are derived from the source dataset's annotations."]
