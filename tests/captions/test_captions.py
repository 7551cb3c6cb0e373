import pytest
from inat_layout import make_inat_root
from vlconvert.adapters.inat2021 import INat2021Adapter

from vlconvert import ClassInfo, Record, VLConvertError
from vlconvert.captions.filters import article, join_and, join_ranks
from vlconvert.captions.render import CaptionError, CaptionRenderer, builtin_template_names, caption_spec, load_template, load_templates

# CUB-200-style classes: a cleaned English name, no taxonomy, the raw folder name kept aside.
CUB = [
    ClassInfo(0, "Black-footed Albatross", "", (), {"raw_name": "001.Black_footed_Albatross"}),
    ClassInfo(1, "Red-winged Blackbird", "", (), {"raw_name": "010.Red_winged_Blackbird"}),
]


@pytest.fixture(scope="module")
def inat(tmp_path_factory):
    root = make_inat_root(tmp_path_factory.mktemp("inat"), per_class={"val": 1})
    return {c.name: c for c in INat2021Adapter(str(root)).classes()}


def render(template: str, cls: ClassInfo, metadata=None) -> str:
    cls = ClassInfo(0, cls.name, cls.common_name, cls.taxonomy, cls.extra)
    chosen = load_template(template)
    renderer = CaptionRenderer([chosen], [cls])
    return renderer.render(chosen, Record(key="k1", image=b"", label=0, split="val", metadata=metadata or {}))


OBSERVED = {"date": "2019-07-15 10:00:00+00:00", "latitude": 35.52, "longitude": -139.25}


@pytest.mark.parametrize(
    ("template", "name", "expected"),
    [
        ("scientific", "Pica hudsonia", "a photo of Pica hudsonia."),
        ("common", "Pica hudsonia", "a photo of Black-billed Magpie."),
        ("common", "Serpula columbiana", "a photo of Serpula columbiana."),
        ("common", "Trichonephila clavata", "a photo of Jorō Spider."),
        ("taxonomic", "Lumbricus terrestris", "a photo of Animalia Annelida Clitellata Haplotaxida Lumbricidae Lumbricus terrestris."),
        ("taxonomic_tagged", "Pica hudsonia",
         "a photo of kingdom Animalia phylum Chordata class Aves order Passeriformes family Corvidae genus Pica species hudsonia."),
        ("scientific_common", "Calypte anna", "a photo of Calypte anna with common name Anna's Hummingbird."),
        ("scientific_common", "Serpula columbiana", "a photo of Serpula columbiana."),
        ("taxonomic_common", "Pseudolabrus guentheri",
         "a photo of Animalia Chordata Actinopterygii Perciformes Labridae Pseudolabrus guentheri with common name Günther's Wrasse."),
        ("taxonomic_common", "Serpula columbiana", "a photo of Animalia Annelida Polychaeta Sabellida Serpulidae Serpula columbiana."),
        ("metadata_concat", "Pica hudsonia", "a photo of a Black-billed Magpie Birds Pica"),
        ("metadata_concat", "Quercus robur", "a photo of an English oak Plants Quercus"),
        ("observation", "Pica hudsonia", "a photo of Black-billed Magpie (Pica hudsonia), observed in July 2019 at 35.5°N 139.2°W."),
        ("with_attributes", "Amanita muscaria", "a photo of a Fly Agaric."),
    ],
)
def test_builtin_templates_on_inat_classes(inat, template, name, expected):
    assert render(template, inat[name], OBSERVED if template == "observation" else None) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("scientific", "a photo of Red-winged Blackbird."),
        ("common", "a photo of Red-winged Blackbird."),
        ("taxonomic", "a photo of Red-winged Blackbird."),
        ("taxonomic_tagged", "a photo of Red-winged Blackbird."),
        ("scientific_common", "a photo of Red-winged Blackbird."),
        ("taxonomic_common", "a photo of Red-winged Blackbird."),
        ("metadata_concat", "a photo of a Red-winged Blackbird"),
        ("observation", "a photo of Red-winged Blackbird."),
        ("with_attributes", "a photo of a Red-winged Blackbird, with a cone-shaped bill, black wings and a red shoulder patch."),
    ],
)
def test_builtin_templates_on_cub_classes(template, expected):
    attributes = {"attributes": ["a cone-shaped bill", "black wings", "a red shoulder patch"]}
    assert render(template, CUB[1], attributes if template == "with_attributes" else None) == expected


def test_every_builtin_template_is_covered_and_documented():
    names = set(builtin_template_names())
    assert {"scientific", "common", "taxonomic", "taxonomic_tagged", "scientific_common", "taxonomic_common",
            "metadata_concat", "observation", "with_attributes"} == names
    assert all(load_template(n).source.lstrip().startswith("{#-") for n in names)


def test_observation_leaves_out_what_is_missing(inat):
    assert render("observation", inat["Pica hudsonia"], {"date": None, "latitude": None}) == \
        "a photo of Black-billed Magpie (Pica hudsonia)."
    assert render("observation", inat["Pica hudsonia"], {"date": "2020-03-01"}) == \
        "a photo of Black-billed Magpie (Pica hudsonia), observed in March 2020."


def test_filters():
    assert [article(w) for w in ("English oak", "Black-billed Magpie", "European Robin", "hour", "")] == \
        ["an English oak", "a Black-billed Magpie", "a European Robin", "an hour", ""]
    ranks = {"kingdom": "Animalia", "phylum": "", "class": "Aves", "genus": "Pica", "species": "hudsonia"}
    assert join_ranks(ranks) == "Animalia Aves Pica hudsonia"
    assert join_ranks(ranks, upto="class") == "Animalia Aves"
    assert join_ranks(ranks, upto="genus", tagged=True) == "kingdom Animalia class Aves genus Pica"
    with pytest.raises(ValueError, match="no such rank"):
        join_ranks(ranks, upto="tribe")
    assert join_and(["a", "b", "c"]) == "a, b and c" and join_and(["a"]) == "a" and join_and([]) == ""


def test_helpers_in_a_template_file(tmp_path, inat):
    path = tmp_path / "mine.j2"
    path.write_text("{{ taxonomy | binomial }} | {{ taxonomy | join_ranks(upto='order') }} | {{ common_name | lower | capfirst }} "
                    "| {{ name | article }} | {{ meta.date | month_name }} {{ meta.date | year }} | {{ meta | place(0) }}")
    assert render(str(path), inat["Pica hudsonia"], OBSERVED) == \
        "Pica hudsonia | Animalia Chordata Aves Passeriformes | Black-billed magpie | a Pica hudsonia | July 2019 | 36°N 139°W"


def test_empty_ranks_are_skipped_and_whitespace_collapsed():
    cls = ClassInfo(0, "Pica hudsonia", "", (("kingdom", "Animalia"), ("order", ""), ("genus", "Pica")))
    assert render("taxonomic_common", cls) == "a photo of Animalia Pica."
    assert render("taxonomic_tagged", cls) == "a photo of kingdom Animalia genus Pica."
    assert render("taxonomic", ClassInfo(0, "Mystery thing")) == "a photo of Mystery thing."


def test_template_file_sees_class_fields_and_record_metadata(tmp_path, inat):
    path = tmp_path / "observed.j2"
    path.write_text("{{ common_name }} ({{ supercategory }}, {{ family }}) seen on {{ meta.date[:10] }}", encoding="utf-8")
    assert render(str(path), inat["Trichonephila clavata"], OBSERVED) == "Jorō Spider (Arachnids, Araneidae) seen on 2019-07-15"
    assert load_templates([str(path)])[0].name == "observed"


def test_unknown_field_names_field_template_and_class(tmp_path, inat):
    path = tmp_path / "typo.j2"
    path.write_text("a photo of {{ comon_name }}", encoding="utf-8")
    cls = inat["Pica hudsonia"]
    renderer = CaptionRenderer(load_templates([str(path)]), [ClassInfo(0, cls.name, cls.common_name, cls.taxonomy, cls.extra)])
    with pytest.raises(VLConvertError, match=r"template typo \(.*typo.j2\): 'comon_name' is undefined \(class 0 'Pica hudsonia'\)"):
        renderer.check_classes()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ name.__class__.__mro__ }}", "refused by the sandbox: access to attribute '__class__'"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "refused by the sandbox"),
        ("{{ name.format.__globals__ }}", "refused by the sandbox"),
        ("{% for i in range(10**9) %}x{% endfor %}", "refused by the sandbox: the \\*\\* operator is not allowed"),
        ("{% for i in range(1000000000) %}x{% endfor %}", "Range too big. The sandbox blocks ranges larger than MAX_RANGE"),
        ("{{ name * 100000000 }}", "refused by the sandbox: repeating past 100,000 characters"),
        ("{{ ((name * 100) * 100) * 100 }}", "refused by the sandbox: repeating past 100,000 characters"),
        ("{{ name | center(2000000000) }}", "refused by the sandbox: a width over 2000"),
        ("{{ '%2000000000s' | format(name) }}", "refused by the sandbox: format widths over 999"),
        ("{{ '{:>2000000000}'.format(name) }}", "refused by the sandbox: format widths over 999"),
        ("{{ lipsum(n=100000000) }}", "'lipsum' is undefined"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
         "refused by the sandbox: the template took more than 50,000 operations"),
        ("{% for i in range(3000) %}ab{% endfor %}", "refused by the sandbox: the caption grew past 2000 characters"),
    ],
)
def test_sandbox_refuses_python_internals_and_runaway_work(tmp_path, source, message):
    path = tmp_path / "evil.j2"
    path.write_text(source)
    renderer = CaptionRenderer(load_templates([str(path)]), [ClassInfo(0, "x")])
    with pytest.raises(VLConvertError, match=message):
        renderer.check_classes()


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
    clash = tmp_path / "common.j2"
    clash.write_text("{{ name }}", encoding="utf-8")
    with pytest.raises(VLConvertError, match="two different templates are named 'common'"):
        caption_spec([str(clash)], all_templates=True)


def test_default_template_is_taxonomic_common():
    assert [t.name for t, _ in caption_spec().primary] == ["taxonomic_common"]


def test_mix_choice_is_deterministic_and_follows_the_weights():
    spec = caption_spec(mix={"scientific": 0.3, "common": 0.3, "taxonomic": 0.4}, seed=5)
    keys = [f"img-{i}" for i in range(6000)]
    chosen = [spec.choose(k).name for k in keys]
    assert chosen == [caption_spec(mix={"scientific": 3, "common": 3, "taxonomic": 4}, seed=5).choose(k).name for k in keys]
    for name, weight in (("scientific", 0.3), ("common", 0.3), ("taxonomic", 0.4)):
        share = chosen.count(name) / len(keys)
        assert abs(share - weight) < 4 * (weight * (1 - weight) / len(keys)) ** 0.5, (name, share)  # within 4 sigma
    other_seed = [caption_spec(mix={"scientific": 0.3, "common": 0.3, "taxonomic": 0.4}, seed=6).choose(k).name for k in keys]
    assert other_seed != chosen


def test_all_templates_adds_every_builtin_as_a_named_member():
    spec = caption_spec(["scientific"], all_templates=True)
    assert spec.primary[0][0].name == "scientific"
    assert [t.name for t in spec.named] == builtin_template_names()


def test_render_error_is_a_caption_error():
    renderer = CaptionRenderer(load_templates(["with_attributes"]), [ClassInfo(0, "x")])
    with pytest.raises(CaptionError, match=r"template with_attributes \(built-in\): 'int' object is not subscriptable"):
        renderer.render("with_attributes", Record("k", b"", 0, "val", metadata={"attributes": 5}))


def test_template_files_must_be_j2_and_utf8(tmp_path):
    with pytest.raises(VLConvertError, match="template file common.j2 does not exist; the built-in template is named plain 'common'"):
        load_template("common.j2")
    with pytest.raises(VLConvertError, match="unknown template 'README.md'"):
        load_template("README.md")
    latin = tmp_path / "latin.j2"
    latin.write_bytes(b"\xffa photo of {{ name }}")
    with pytest.raises(VLConvertError, match=r"template file .*latin.j2: not UTF-8 text \(byte 0\)"):
        load_template(str(latin))


@pytest.mark.parametrize("mix", [{"scientific": float("nan"), "common": 1}, {"scientific": float("inf"), "common": 1},
                                 {"scientific": 0, "common": 1}, {"scientific": 1, " scientific ": 2}])
def test_bad_mix_weights_are_refused(mix):
    with pytest.raises(VLConvertError, match="--template-mix"):
        caption_spec(mix=mix)


def test_mix_names_are_stripped():
    assert [t.name for t, _ in caption_spec(mix={" scientific ": 1, "common": 1}).primary] == ["scientific", "common"]


def test_a_template_without_record_fields_is_rendered_once_per_class_and_one_with_them_per_record(tmp_path, inat):
    cls = inat["Trichonephila clavata"]
    per_record = tmp_path / "observed.j2"
    per_record.write_text("{{ name }} seen on {{ meta.date[:10] }}", encoding="utf-8")
    per_class = tmp_path / "plain.j2"
    per_class.write_text("{% set meta = 'shadowed' %}a photo of {{ name }} {{ meta }}", encoding="utf-8")
    templates = load_templates([str(per_record), str(per_class)])
    renderer = CaptionRenderer(templates, [ClassInfo(0, cls.name, cls.common_name, cls.taxonomy, cls.extra)])
    records = [Record(key=f"k{day}", image=b"", label=0, split="val", metadata={"date": f"2019-07-{day:02d}"}) for day in (1, 2)]
    assert [renderer.render(templates[0], r) for r in records] == [f"{cls.name} seen on 2019-07-01", f"{cls.name} seen on 2019-07-02"]
    assert [renderer.render(templates[1], r) for r in records] == [f"a photo of {cls.name} shadowed"] * 2
    assert list(renderer._rendered) == [("plain", 0)]
