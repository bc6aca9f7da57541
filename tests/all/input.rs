//! Bad input gets an error that names the row and the field, and stores
//! nothing of that record.

use custodian::{Error, ImportOptions, ModelError, NewCustomer, Query};

use crate::{Fixture, admin, file_contains};

fn refused(engine: &custodian::Engine, new: NewCustomer) -> Error {
    engine.create_customer(&admin(), new).unwrap_err()
}

#[test]
fn bad_fields_are_refused_with_their_name() {
    let fx = Fixture::new();
    let engine = fx.open();
    let base = || NewCustomer::new().field("name", "Unstored Person");
    let cases: Vec<(NewCustomer, &str)> = vec![
        (base().field("phone", "12345"), "phone"),
        (base().field("phone", "+86 1380013800"), "phone"),
        (base().field("email", "not-an-email"), "email"),
        (base().field("shoe_size", "42"), "shoe_size"),
        (base().field("birthday", "1990-02-30"), "birthday"),
        (base().field("id_number", "110105198803120218"), "id_number"),
        (base().field("notes", "x".repeat(10 << 20)), "notes"),
        (base().field("name", "y".repeat(10 << 20)), "name"),
        (NewCustomer::new().field("phone", "13800138000"), "name"),
    ];
    for (new, field) in cases {
        let err = refused(&engine, new);
        assert!(
            err.to_string().contains(&format!("`{field}`")),
            "error for {field} does not name it: {err}"
        );
        assert!(matches!(err, Error::Model(_)), "{err}");
    }
    assert_eq!(engine.count_customers(&admin()).unwrap(), 0);
    drop(engine);
    assert!(!file_contains(&fx.db(), "Unstored"));
}

#[test]
fn csv_import_skips_bad_rows_by_line_and_field_and_keeps_the_rest() {
    let fx = Fixture::new();
    let engine = fx.open();
    let mut csv: Vec<u8> = b"name,phone,email\n".to_vec();
    csv.extend_from_slice(b"Good One,13800000001,one@example.com\n"); // line 2
    csv.extend_from_slice(b"Bad Phone,1234,bad@example.com\n"); // line 3
    csv.extend_from_slice(b"Too,Many,Fields,Here\n"); // line 4
    csv.extend_from_slice(b"Bad \xff\xfe Name,13800000004,four@example.com\n"); // line 5
    csv.extend_from_slice(b"Good Two,13800000005,two@example.com\n"); // line 6
    csv.extend_from_slice(b",13800000006,noname@example.com\n"); // line 7
    let report = engine
        .import_csv(&admin(), csv.as_slice(), &ImportOptions::default(), |_| {})
        .unwrap();
    assert_eq!(report.imported, 2);
    let errors: Vec<(u64, String)> = report
        .errors
        .iter()
        .map(|e| (e.line, e.error.to_string()))
        .collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert_eq!(errors[0].0, 3);
    assert!(errors[0].1.contains("`phone`"), "{errors:?}");
    assert_eq!(errors[1].0, 4);
    assert!(errors[1].1.contains("4 fields"), "{errors:?}");
    assert_eq!(errors[2].0, 5);
    assert!(
        errors[2].1.contains("`name`") && errors[2].1.contains("UTF-8"),
        "{errors:?}"
    );
    assert_eq!(errors[3].0, 7);
    assert!(errors[3].1.contains("`name` is required"), "{errors:?}");

    assert_eq!(engine.count_customers(&admin()).unwrap(), 2);
    for (phone, present) in [
        ("13800000001", true),
        ("13800000004", false),
        ("13800000005", true),
    ] {
        let found = engine
            .find_customers(&admin(), &Query::field("phone", phone), 5)
            .unwrap();
        assert_eq!(!found.is_empty(), present, "{phone}");
    }
}

#[test]
fn an_unknown_column_refuses_the_whole_file() {
    let fx = Fixture::new();
    let engine = fx.open();
    let csv = "name,phone,favourite_colour\nA,13800000001,blue\n";
    let err = engine
        .import_csv(&admin(), csv.as_bytes(), &ImportOptions::default(), |_| {})
        .unwrap_err();
    assert!(
        matches!(&err, Error::Model(ModelError::UnknownField { field }) if field == "favourite_colour"),
        "{err}"
    );
    assert_eq!(engine.count_customers(&admin()).unwrap(), 0);
}

#[test]
fn a_non_utf8_file_is_reported_not_panicked_on() {
    let fx = Fixture::new();
    let engine = fx.open();
    // Latin-1 bytes throughout, as a spreadsheet export might produce.
    let csv: Vec<u8> = b"name,phone\nJos\xe9,13800000001\nRen\xe9e,13800000002\n".to_vec();
    let report = engine
        .import_csv(&admin(), csv.as_slice(), &ImportOptions::default(), |_| {})
        .unwrap();
    assert_eq!(report.imported, 0);
    assert_eq!(report.errors.len(), 2);
    assert_eq!(report.errors[0].line, 2);
    assert!(report.errors[0].error.to_string().contains("`name`"));
    // A header that is not UTF-8 refuses the file.
    let err = engine
        .import_csv(
            &admin(),
            &b"n\xe9me\nA\n"[..],
            &ImportOptions::default(),
            |_| {},
        )
        .unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn schema_files_are_checked() {
    let err = custodian::Schema::from_toml(
        "[[field]]\nname = \"tier\"\ntype = \"enum\"\nsensitivity = \"public\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("`tier`"), "{err}");
    let err = custodian::Schema::from_toml(
        "[[field]]\nname = \"owner\"\ntype = \"text\"\nsensitivity = \"public\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("built in"), "{err}");
    let err = custodian::Schema::from_toml(
        "[[field]]\nname = \"x\"\ntype = \"colour\"\nsensitivity = \"public\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");
}

/// Every file of the fixture's folder whose raw bytes hold `needle`.
fn files_holding(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && file_contains(&path, needle) {
            found.push(path.display().to_string());
        }
    }
    found
}

/// A refused value is never written: not into the audit entry that
/// records the refusal, not into any other record, whichever path it came
/// by (the API, a CSV import, a plugin's command) and whatever its type.
#[test]
fn a_refused_value_is_written_nowhere() {
    use crate::plugins::hostile;
    let fx = Fixture::new();
    let engine = hostile(&fx, |_| {});
    let id = engine
        .create_customer(&admin(), crate::li_na().field("tags", "visible-tag-4471"))
        .unwrap();
    // Each value is refused by its field's type, and unique in the files.
    let refused: &[(&str, &str)] = &[
        ("email", "zhou.7259@@example.org"),
        ("phone", "+86 1399999 77x1"),
        ("phone", "+0998877665544"),
        ("birthday", "1977-13-45refused"),
        ("id_number", "110105198803129993"),
        ("id_number", "refused#id#7731"),
        ("tags", &format!("ok,{}", "refusedtag".repeat(8))),
    ];
    let mut values: Vec<String> = Vec::new();
    for (field, value) in refused {
        values.push(value.to_string());
        let new = NewCustomer::new()
            .field("name", "Shown Name")
            .field(*field, *value);
        let err = engine.create_customer(&admin(), new).unwrap_err();
        assert!(err.to_string().contains(&format!("`{field}`")), "{err}");
        assert!(!err.to_string().contains(*value), "{err}");
        let update = custodian::CustomerUpdate::new().set(*field, *value);
        engine.update_customer(&admin(), id, update).unwrap_err();
        // The same value by a plugin's upsert, for an existing customer and
        // for a new one.
        for target in [id.to_string(), "999999".into()] {
            let command = format!("command upsert {target} {field}={value}");
            let err = engine.ingest("misbehave", command.as_bytes()).unwrap_err();
            assert!(!err.to_string().contains(*value), "{err}");
        }
    }
    // A name given where a field's should be may be a value too.
    let misplaced = "wei.misplaced@example.org";
    values.push(misplaced.into());
    let command = format!("command upsert {id} {misplaced}=x");
    let err = engine.ingest("misbehave", command.as_bytes()).unwrap_err();
    assert!(!err.to_string().contains(misplaced), "{err}");
    // By CSV, a line per refused value; the good line is imported.
    let mut csv = String::from("name,phone,email,birthday,id_number\n");
    csv.push_str("Csv Good,13800000011,good@example.com,,\n");
    csv.push_str("Csv One,13800000012,csv.7733@@example.org,,\n");
    csv.push_str("Csv Two,+86 13x77221100,two@example.com,,\n");
    csv.push_str("Csv Three,13800000014,three@example.com,2001-02-30,\n");
    values.extend(["csv.7733@@example.org", "13x77221100", "2001-02-30"].map(String::from));
    let report = engine
        .import_csv(
            &admin(),
            csv.as_bytes(),
            &custodian::ImportOptions::default(),
            |_| {},
        )
        .unwrap();
    assert_eq!((report.imported, report.errors.len()), (1, 3), "{report:?}");
    // Refusals are audited, so the audit is where a value would be.
    let tail = engine.audit_tail(&admin(), 200).unwrap();
    assert!(
        tail.iter()
            .any(|e| !matches!(e.outcome, custodian::Outcome::Ok)),
        "no refusal was audited"
    );
    drop(engine);
    for value in &values {
        let found = files_holding(fx.dir.path(), value);
        assert!(found.is_empty(), "refused value {value:?} is in {found:?}");
    }
    // The search finds what is there: a tag, which is indexed in the clear.
    assert!(!files_holding(fx.dir.path(), "visible-tag-4471").is_empty());
}

/// Rows are named by the line they start on as an editor counts lines:
/// in a CRLF file, after blank lines, after quoted fields that span lines
/// (CRLF or LF inside), and after a lone CR.
#[test]
fn csv_errors_name_lines_as_an_editor_counts_them() {
    let fx = Fixture::new();
    let engine = fx.open();
    let csv: &[u8] = b"name,phone,email\r\n\
        Good One,13800000001,one@example.com\r\n\
        Bad Phone,1234,bad@example.com\r\n\
        \r\n\
        \"Multi\r\nLine\",13800000005,five@example.com\r\n\
        \"Two\nLines\",13800000007,seven@example.com\n\
        After Quotes,1234,nine@example.com\r\n\
        \r\n\
        \r\n\
        Lone CR,1234,twelve@example.com\r\
        Last,1234,thirteen@example.com\r\n";
    let report = engine
        .import_csv(&admin(), csv, &ImportOptions { batch_size: 2 }, |_| {})
        .unwrap();
    let lines: Vec<u64> = report.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 5, 9, 12, 13], "{:?}", report.errors);
    assert!(
        report.errors[1]
            .error
            .to_string()
            .contains("control characters"),
        "{:?}",
        report.errors
    );
    assert_eq!(report.imported, 2);
}
