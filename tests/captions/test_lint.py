from inat_layout import EXAMPLE

from vlconvert import create_adapter
from vlconvert.captions.lengths import percentiles
from vlconvert.captions.lint import lint, sample_records
from vlconvert.captions.render import Template, load_template


def example(n=50):
    adapter = create_adapter("inat2021", str(EXAMPLE))
    return adapter.classes(), sample_records(adapter.records("train"), n, seed=0, split="train")


def test_guarded_and_optional_metadata_is_not_undefined():
    classes, sample = example()
    source = "a photo of {{ name }}{% if meta.habitat is defined %} in {{ meta.habitat }}{% endif %}{{ meta.get('notes', '') }}"
    report = lint(Template("guarded", source, "test"), classes, sample)
    assert report.ok and report.undefined == [] and report.failures == []


def test_metadata_the_dataset_has_is_defined_and_unknown_metadata_is_not():
    classes, sample = example()
    report = lint(Template("t", "{{ name }} {{ meta.rights_holder }} {{ meta['habitat'] }} {{ meta.date }}", "test"), classes, sample)
    assert report.undefined == ["meta.habitat"] and not report.ok


def test_render_failures_are_reported_per_class():
    classes, sample = example()
    report = lint(Template("t", "{{ name }} {{ 1 / (label - 3) }}", "test"), classes, sample)
    assert report.undefined == []
    assert report.failures[0].startswith("class 3 'Danaus plexippus': template t (test): division by zero")


def test_lengths_and_sampling_are_deterministic():
    classes, sample = example(30)
    assert [r.key for r in sample] == [r.key for r in example(30)[1]]
    report = lint(load_template("taxonomic_tagged"), classes, sample)
    assert len(report.char_lengths) == 12 + 30
    assert report.token_lengths is None or (len(report.token_lengths) == 42 and max(report.token_lengths) < 77)
    assert percentiles([5, 1, 3]) == {"p0": 1, "p50": 3, "p90": 5, "p99": 5, "p100": 5}


def test_every_kind_of_guard_is_understood():
    classes, sample = example()
    source = ("{{ name }}{% if meta['habitat'] is defined %} {{ meta['habitat'] }}{% endif %}"
              "{% if 'depth' in meta %} {{ meta.depth }}{% endif %}{{ meta.notes | default('') }}"
              "{% if tribe is defined %} {{ tribe }}{% endif %}{{ meta.get('sex', '') }}")
    report = lint(Template("guards", source, "test"), classes, sample)
    assert report.undefined == [] and report.ok


def test_builtin_templates_lint_clean_on_the_example():
    classes, sample = example()
    from vlconvert.captions.render import builtin_template_names

    for name in builtin_template_names():
        report = lint(load_template(name), classes, sample)
        assert report.ok, (name, report.undefined, report.failures[:2])


def test_unsampled_classes_use_real_metadata():
    classes, sample = example(n=3)
    report = lint(Template("dated", "{{ name }} {{ meta.date[:4] }}", "test"), classes, sample)
    assert report.ok and report.failures == []


def test_collisions_compare_as_the_tokenizer_sees_text():
    from vlconvert import ClassInfo

    classes = [ClassInfo(0, "Enallagma aspersum", "Azure Bluet"), ClassInfo(1, "Enallagma other", "azure  bluet"),
               ClassInfo(2, "Pica hudsonia", "Black-billed Magpie")]
    report = lint(load_template("common"), classes, [])
    assert report.collisions == [("a photo of azure bluet.", ["Enallagma aspersum", "Enallagma other"])]
