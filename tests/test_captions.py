import pytest
from inat_layout import make_inat_root
from vlconvert.adapters.inat2021 import INat2021Adapter

from vlconvert import ClassInfo, Record, VLConvertError
from vlconvert.captions import CaptionError, CaptionRenderer, builtin_template_names, load_templates


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    root = make_inat_root(tmp_path_factory.mktemp("inat"), per_class={"val": 1})
    return {c.name: c for c in INat2021Adapter(str(root)).classes()}


def render(template: str, cls: ClassInfo, metadata=None) -> str:
    renderer = CaptionRenderer(load_templates([template]), [cls])
    record = Record(key="k1", image=b"", label=0, split="val", metadata=metadata or {})
    return renderer.render(record)[0]


def relabel(cls: ClassInfo) -> ClassInfo:
    return ClassInfo(0, cls.name, cls.common_name, cls.taxonomy, cls.extra)


@pytest.mark.parametrize(
    ("template", "name", "expected"),
    [
        ("scientific", "Lumbricus terrestris", "a photo of Lumbricus terrestris."),
        ("common", "Lumbricus terrestris", "a photo of Common Earthworm."),
        ("common", "Serpula columbiana", "a photo of Serpula columbiana."),
        ("common", "Trichonephila clavata", "a photo of Jorō Spider."),
        ("taxonomic", "Lumbricus terrestris", "a photo of Animalia Annelida Clitellata Haplotaxida Lumbricidae Lumbricus terrestris."),
        ("scientific_common", "Calypte anna", "a photo of Calypte anna with common name Anna's Hummingbird."),
        ("scientific_common", "Serpula columbiana", "a photo of Serpula columbiana."),
        ("taxonomic_common", "Pseudolabrus guentheri",
         "a photo of Animalia Chordata Actinopterygii Perciformes Labridae Pseudolabrus guentheri with common name Günther's Wrasse."),
        ("taxonomic_common", "Serpula columbiana",
         "a photo of Animalia Annelida Polychaeta Sabellida Serpulidae Serpula columbiana."),
    ],
)
def test_builtin_templates(classes, template, name, expected):
    assert render(template, relabel(classes[name])) == expected


def test_builtin_template_names():
    assert {"scientific", "common", "taxonomic", "scientific_common", "taxonomic_common"} <= set(builtin_template_names())


def test_empty_ranks_are_skipped_and_whitespace_collapsed():
    cls = ClassInfo(0, "Pica hudsonia", "", (("kingdom", "Animalia"), ("order", "Passeriformes"), ("genus", "Pica")))
    assert render("taxonomic_common", cls) == "a photo of Animalia Passeriformes Pica."
    assert render("taxonomic", ClassInfo(0, "Mystery thing")) == "a photo of Mystery thing."


def test_template_file_sees_class_fields_and_record_metadata(tmp_path, classes):
    path = tmp_path / "observed.j2"
    path.write_text("{{ common_name }} ({{ supercategory }}, {{ family }}) seen on {{ meta.date[:10] }}", encoding="utf-8")
    text = render(str(path), relabel(classes["Trichonephila clavata"]), {"date": "2019-03-15 10:00:00+00:00"})
    assert text == "Jorō Spider (Arachnids, Araneidae) seen on 2019-03-15"
    assert load_templates([str(path)])[0].name == "observed"


def test_unknown_field_fails_before_the_build_naming_field_and_class(tmp_path, classes):
    path = tmp_path / "typo.j2"
    path.write_text("a photo of {{ comon_name }}", encoding="utf-8")
    renderer = CaptionRenderer(load_templates([str(path)]), [relabel(classes["Pica hudsonia"])])
    with pytest.raises(VLConvertError, match=r"template typo \(.*typo.j2\): 'comon_name' is undefined \(class 0 'Pica hudsonia'\)"):
        renderer.check_classes()
    with pytest.raises(CaptionError, match="comon_name"):
        renderer.render(Record("k", b"", 0, "val"))


def test_syntax_error_names_template_and_line(tmp_path):
    path = tmp_path / "broken.j2"
    path.write_text("line one\na photo of {{ name ", encoding="utf-8")
    with pytest.raises(VLConvertError, match=r"template broken \(.*broken.j2\), line 2"):
        CaptionRenderer(load_templates([str(path)]), [])


def test_template_spec_errors(tmp_path):
    with pytest.raises(VLConvertError, match="unknown template 'scientfic'"):
        load_templates(["scientfic"])
    with pytest.raises(VLConvertError, match="does not exist"):
        load_templates([str(tmp_path / "nope.j2")])
    dotted = tmp_path / "my.style.j2"
    dotted.write_text("{{ name }}", encoding="utf-8")
    with pytest.raises(VLConvertError, match=r"KEY.my.style.txt"):
        load_templates([str(dotted)])
    with pytest.raises(VLConvertError, match="given twice"):
        load_templates(["common", "common"])


def test_default_template_is_taxonomic_common():
    assert [t.name for t in load_templates([])] == ["taxonomic_common"]


def test_sandbox_blocks_python_internals(tmp_path):
    path = tmp_path / "evil.j2"
    path.write_text("{{ name.__class__.__mro__ }}", encoding="utf-8")
    renderer = CaptionRenderer(load_templates([str(path)]), [ClassInfo(0, "x")])
    with pytest.raises(CaptionError):
        renderer.render(Record("k", b"", 0, "val"))
