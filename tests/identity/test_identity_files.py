"""The CLI's input files: the encodings Chinese exports come in, and errors that say which file and line."""

import codecs
import gzip
import re

import polars as pl
import pytest

from identity.cli import main
from identity.files import read_table

TEXT = (
    "source,record_id,id_type,scope,id_value,observed_at\n"
    "crm_members,会员000017,phone,,13912345678,2024-01-02 10:00:00\n"
    'orders,"订单,1",phone,,+86 139 1234 5678,2024-01-03 10:00:00\n'
)
EXPECTED = pl.DataFrame(
    {
        "source": ["crm_members", "orders"],
        "record_id": ["会员000017", "订单,1"],
        "id_type": ["phone", "phone"],
        "scope": [None, None],
        "id_value": ["13912345678", "+86 139 1234 5678"],
        "observed_at": ["2024-01-02 10:00:00", "2024-01-03 10:00:00"],
    },
    schema_overrides={"scope": pl.String},
)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("utf8.csv", TEXT.encode("utf-8")),
        ("excel.csv", codecs.BOM_UTF8 + TEXT.encode("utf-8")),
        ("gbk.csv", TEXT.encode("gb18030")),
        ("gbk.csv.gz", gzip.compress(TEXT.encode("gb18030"))),
        ("utf8.csv.gz", gzip.compress(TEXT.encode("utf-8"))),
    ],
)
def test_csv_in_utf8_or_gb18030_reads_the_same_text(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    assert read_table(path).equals(EXPECTED)


def test_parquet_reads_as_written(tmp_path):
    EXPECTED.write_parquet(tmp_path / "obs.parquet")
    assert read_table(tmp_path / "obs.parquet").equals(EXPECTED)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.csv", b"", r"empty\.csv: empty file"),
        ("quote.csv", b'a,b\n1,2\n3,"4\n5,6\n', r"quote\.csv: line 3: a quoted field is never closed"),
        ("ragged.csv", b"a,b\n1,2\n3,4,5\n", r"ragged\.csv: line 3 has 3 fields, the header 2"),
        (
            "binary.csv",
            b"a,b\n1,2\n3,\xff\xfe\n",
            r"binary\.csv: neither UTF-8 \(line 3, byte 3 \(0xff\)\) nor GB18030 \(line 3, byte 3 \(0xff\)\)",
        ),
        ("broken.csv.gz", gzip.compress(b"a,b\n1,\xff\n")[:-12], r"broken\.csv\.gz: not a readable gzip file"),
        ("text.parquet", b"a,b\n1,2\n", r"text\.parquet: not a readable Parquet file"),
    ],
)
def test_unreadable_files_say_which_file_and_line(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message):
        read_table(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.csv: no such file"):
        read_table(tmp_path / "nothing.csv")


def test_cli_resolves_a_gb18030_export_like_its_utf8_copy(tmp_path, capsys):
    outputs = []
    for name, encoding in (("utf8.csv", "utf-8"), ("gbk.csv", "gb18030")):
        (tmp_path / name).write_bytes(TEXT.encode(encoding))
        out = tmp_path / f"{name}.out.csv"
        assert main(["resolve", "--observations", str(tmp_path / name), "--out", str(out)]) == 0
        outputs.append(pl.read_csv(out, infer_schema=False))
    assert outputs[0].equals(outputs[1])
    assert sorted(outputs[1]["record_id"]) == ["会员000017", "订单,1"]
    assert outputs[1]["user_id"].n_unique() == 1  # one phone, two spellings


@pytest.mark.parametrize(
    ("row", "message"),
    [
        # the second data row (line 3 of the file) is the bad one in each case
        ("crm_members,M2,phone,,13912345678,yesterday", r"column observed_at: 'yesterday' is not an ISO time"),
        (",M2,phone,,13912345678,", r"row 2 after the header, column source: empty \(1 such rows in all\)"),
        ("crm_members,,phone,,13912345678,", r"row 2 after the header, column record_id: empty"),
    ],
)
def test_cli_names_the_file_row_and_column_of_bad_observations(tmp_path, capsys, row, message):
    path = tmp_path / "obs.csv"
    path.write_text(
        "source,record_id,id_type,scope,id_value,observed_at\n"
        f"crm_members,M1,phone,,13912345678,2024-01-01 10:00:00\n{row}\n",
        encoding="utf-8",
    )
    assert main(["resolve", "--observations", str(path), "--out", str(tmp_path / "out.csv")]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"oneid resolve: {path}, row 2")
    assert re.search(message, error), error
    assert error.rstrip().endswith("(--quarantine FILE sets such rows aside and resolves the others)")
    assert not (tmp_path / "out.csv").exists()


MESSY = """source,record_id,id_type,scope,id_value,observed_at
crm_members,M1,phone,,13912345678,2024-01-01 10:00:00
,M2,phone,,13912345678,2024-01-02
crm_members,M3,phone,,13912345678,yesterday
crm_members,M3,email,,m3@example.com,2024/01/03
orders,o1,phone,,13912345678,
orders,,phone,,13700000001,
"""


def test_cli_quarantine_sets_bad_rows_aside_and_resolves_the_rest(tmp_path, capsys):
    path, out, bad = tmp_path / "obs.csv", tmp_path / "out.csv", tmp_path / "rejects" / "bad.csv"
    path.write_text(MESSY, encoding="utf-8")
    assert main(["resolve", "--observations", str(path), "--out", str(out), "--quarantine", str(bad)]) == 0
    printed = capsys.readouterr().out
    said = "rows set aside for breaking the input contract: 3 (by column: 1 observed_at, 1 record_id, 1 source)"
    assert said in printed
    quarantined = pl.read_csv(bad, infer_schema=False)
    assert quarantined.columns == ["file", "row", "column", "reason", "source", "record_id", "id_type", "scope",
                                   "id_value", "observed_at"]
    # numbered as the error messages number them: from 1, after the header
    assert quarantined.select("row", "column", "id_value").rows() == [
        ("2", "source", "13912345678"), ("3", "observed_at", "13912345678"), ("6", "record_id", "13700000001"),
    ]
    assert set(quarantined["file"]) == {str(path)}
    # the rest resolves as the file without those rows would
    lines = MESSY.splitlines(keepends=True)
    (tmp_path / "clean.csv").write_text("".join(lines[:2] + lines[4:6]), encoding="utf-8")
    clean_out = tmp_path / "clean_out.csv"
    assert main(["resolve", "--observations", str(tmp_path / "clean.csv"), "--out", str(clean_out)]) == 0
    assert pl.read_csv(out, infer_schema=False).equals(pl.read_csv(clean_out, infer_schema=False))
    assert sorted(pl.read_csv(out, infer_schema=False)["record_id"]) == ["M1", "M3", "o1"]

    # with a state, incremental too, and out of core: the same rows set aside
    state = tmp_path / "state.duckdb"
    for extra in ([], ["--incremental"]):
        argv = ["resolve", "--observations", str(path), "--out", str(out), "--state", str(state)]
        assert main([*argv, *extra, "--quarantine", str(tmp_path / "state_bad.csv")]) == 0
        assert pl.read_csv(tmp_path / "state_bad.csv", infer_schema=False).equals(quarantined)
    pl.read_csv(path, infer_schema=False).write_parquet(tmp_path / "obs.parquet")
    argv = ["resolve", "--observations", str(tmp_path / "obs.parquet"), "--out", str(tmp_path / "disk.csv")]
    assert main([*argv, "--out-of-core", str(tmp_path / "oneid.duckdb"), "--quarantine", str(bad)]) == 0
    assert "rows set aside for breaking the input contract: 3" in capsys.readouterr().out
    disk = pl.read_csv(bad, infer_schema=False)
    assert disk.drop("file", "strength").equals(quarantined.drop("file"))
    assert pl.read_csv(tmp_path / "disk.csv", infer_schema=False).equals(pl.read_csv(out, infer_schema=False))

    # nothing to set aside: the file is written all the same, with its header
    assert main(["resolve", "--observations", str(tmp_path / "clean.csv"), "--out", str(out), "--quarantine",
                 str(bad)]) == 0
    assert "rows set aside for breaking the input contract: 0" in capsys.readouterr().out
    assert pl.read_csv(bad).height == 0


def test_cli_names_the_parquet_row_of_a_bad_strength(tmp_path, capsys):
    frame = pl.DataFrame(
        {
            "source": ["crm"] * 3, "record_id": ["1", "2", "3"], "id_type": ["phone"] * 3, "scope": [""] * 3,
            "id_value": ["13912345678"] * 3, "observed_at": [None] * 3, "strength": ["weak", None, "Strongest"],
        },
        schema_overrides={"observed_at": pl.String},
    )
    frame.write_parquet(tmp_path / "obs.parquet")
    argv = ["resolve", "--observations", str(tmp_path / "obs.parquet"), "--out", str(tmp_path / "out.csv")]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert "obs.parquet, row 3, column strength: 'Strongest': strength must be strong or weak" in error


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_decoding_a_slice_at_a_time_finds_the_first_bad_byte_wherever_the_slices_fall(encoding):
    from identity.files import _decode

    text = "会员,订单\n" * 3
    assert _decode(text.encode(encoding), encoding, keep=True, step=3) == text.encode("utf-8")
    data = text.encode(encoding) + b"\xff" + b"abc"
    for step in (1, 2, 3, 5, 7, 1 << 20):
        with pytest.raises(UnicodeDecodeError) as caught:
            _decode(data, encoding, keep=False, step=step)
        assert caught.value.start == len(text.encode(encoding))


def test_any_broken_file_gets_a_clean_refusal_not_a_traceback(tmp_path, capsys):
    """Random pieces of CSV, encodings, compressions and names: `oneid resolve` resolves the file or refuses it
    with one line naming it (exit 1), never a traceback."""
    import random

    pieces = [b"crm", b",", b"\n", b"\r\n", b'"', b"13912345678", b"phone", b"\xff", b"\xe4\xbc", "会员".encode(),
              "会员".encode("gb18030"), codecs.BOM_UTF8, b"2024-05-01", b"yesterday", b"\x00", b"openid", b"", b" "]
    outcomes = set()
    for seed in range(150):
        rng = random.Random(seed)
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 60)))
        if rng.random() < 0.8:
            data = TEXT.splitlines(keepends=True)[0].encode() + data
        name = rng.choice(["obs.csv", "obs.csv.gz", "obs.parquet"])
        if name.endswith(".gz") and rng.random() < 0.8:
            data = gzip.compress(data)
        path = tmp_path / f"{seed}_{name}"
        path.write_bytes(data)
        code = main(["resolve", "--observations", str(path), "--out", str(tmp_path / "out.csv")])
        error = capsys.readouterr().err
        assert code in (0, 1)
        assert "Traceback" not in error
        if code == 1:  # the refusal is the last line (a note may come before it)
            assert error.splitlines()[-1].startswith(f"oneid resolve: {path}"), error
        outcomes.add(code)
    assert outcomes == {0, 1}


def test_utf8_chinese_then_other_bytes_is_refused_not_read_as_gb18030(tmp_path):
    """Read as GB18030, UTF-8 Chinese text would become other characters (会员 -> 浼氬憳) without an error."""
    path = tmp_path / "mixed.csv"
    utf8 = TEXT + "crm_members,会员000018,phone,,13912345679,\n" * 3
    path.write_bytes(utf8.encode("utf-8") + "crm_members,会员000019,phone,,13912345670,\n".encode("gb18030"))
    with pytest.raises(ValueError, match=r"mixed\.csv: UTF-8 with Chinese text up to line 7, byte 13 \(0xbb\)"):
        read_table(path)
    # the same rows all in GB18030 are read as they should be
    path.write_bytes(utf8.encode("gb18030"))
    assert read_table(path).height == 5


def test_excel_first_sheet_reads_as_text(tmp_path):
    """Cells typed as numbers (a phone, a record id) and as dates come out as their text, as from a CSV."""
    from datetime import datetime

    sheet = pl.DataFrame(
        {"source": ["crm"], "record_id": [17], "id_type": ["phone"], "scope": [None], "id_value": [13912345678],
         "observed_at": [datetime(2024, 1, 2, 10, 0)]},
        schema_overrides={"scope": pl.String},
    )
    sheet.write_excel(tmp_path / "obs.xlsx")
    assert read_table(tmp_path / "obs.xlsx").row(0) == ("crm", "17", "phone", None, "13912345678", "2024-01-02 10:00:00")
    (tmp_path / "text.xlsx").write_bytes(b"source,record_id\n")
    with pytest.raises(ValueError, match=r"text\.xlsx: not a readable Excel workbook"):
        read_table(tmp_path / "text.xlsx")


def test_cli_says_which_sheets_of_a_workbook_it_leaves_unread(tmp_path, capsys):
    """An export longer than a sheet (1,048,576 rows) goes on in a second one: its rows must not go missing
    without a word."""
    import xlsxwriter

    book = xlsxwriter.Workbook(tmp_path / "obs.xlsx")
    for name in ("会员1", "会员2", "说明"):
        sheet = book.add_worksheet(name)
        sheet.write_row(0, 0, ["source", "record_id", "id_type", "scope", "id_value", "observed_at"])
        sheet.write_row(1, 0, ["crm", name, "phone", "", "13912345678", "2024-01-01"])
    book.close()
    out = tmp_path / "out.csv"
    assert main(["resolve", "--observations", str(tmp_path / "obs.xlsx"), "--out", str(out)]) == 0
    error = capsys.readouterr().err
    assert "obs.xlsx has 3 sheets and only the first is read; not '会员2', '说明'" in error
    assert pl.read_csv(out)["record_id"].to_list() == ["会员1"]
    # one sheet: nothing to say
    book = xlsxwriter.Workbook(tmp_path / "one.xlsx")
    book.add_worksheet().write_row(0, 0, ["source", "record_id", "id_type", "scope", "id_value"])
    book.close()
    assert main(["resolve", "--observations", str(tmp_path / "one.xlsx"), "--out", str(out)]) == 0
    assert "sheets" not in capsys.readouterr().err
