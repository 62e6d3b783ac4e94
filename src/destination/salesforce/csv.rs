//! The CSV dialect of Bulk API 2.0: comma-delimited, LF line endings, fields quoted with `"`
//! when they hold a comma, a quote, a line break or leading/trailing spaces, quotes doubled.

/// Append one field to `out`, quoted when needed.
pub fn write_field(out: &mut String, field: &str) {
    if needs_quotes(field) {
        out.push('"');
        for c in field.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// Append one row (fields joined by commas, then LF).
pub fn write_row<'a>(out: &mut String, fields: impl IntoIterator<Item = &'a str>) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_field(out, f);
    }
    out.push('\n');
}

fn needs_quotes(field: &str) -> bool {
    field.contains([',', '"', '\n', '\r']) || field.starts_with(' ') || field.ends_with(' ')
}

/// The bytes `field` takes once written (quotes included).
pub fn field_len(field: &str) -> usize {
    if needs_quotes(field) {
        field.len() + 2 + field.matches('"').count()
    } else {
        field.len()
    }
}

/// Parse CSV text into rows of fields. Accepts LF and CRLF line endings; a blank last line is
/// ignored. `Err` says where the text stopped being CSV.
pub fn parse(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    // Whether the current row has seen any character (so that a trailing newline ends no row).
    let mut started = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if field.is_empty() => {
                started = true;
                // A quoted field: up to the closing quote.
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            field.push(ch);
                        }
                        None => return Err(format!("line {line}: a quoted field is not closed")),
                    }
                }
                match chars.peek() {
                    None | Some(',') | Some('\n') | Some('\r') => {}
                    Some(other) => return Err(format!("line {line}: `{other}` after a closing quote (quotes inside a field are doubled)")),
                }
            }
            ',' => {
                started = true;
                row.push(std::mem::take(&mut field));
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                line += 1;
                if started {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                started = false;
            }
            other => {
                started = true;
                field.push(other);
            }
        }
    }
    if started {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let rows = vec![
            vec!["Email".to_string(), "Name".into(), "Note".into()],
            vec!["a@x.io".into(), "Doe, Jane".into(), "said \"hi\"\nthen left".into()],
            vec!["b@x.io".into(), "".into(), " padded ".into()],
        ];
        let mut out = String::new();
        for r in &rows {
            write_row(&mut out, r.iter().map(String::as_str));
        }
        assert_eq!(parse(&out).unwrap(), rows);
        for r in &rows {
            for f in r {
                let mut s = String::new();
                write_field(&mut s, f);
                assert_eq!(s.len(), field_len(f));
            }
        }
        assert_eq!(parse("a,b\r\n1,2\r\n").unwrap(), vec![vec!["a", "b"], vec!["1", "2"]]);
        assert!(parse("a,\"b\n").is_err());
        assert!(parse("\"a\"x,b\n").is_err());
    }
}
