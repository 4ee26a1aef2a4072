//! php-cgi's phpinfo (HTML) in PHP's text layout, the one `php-fpm -i` prints.
//!
//! php-fpm sets its SAPI's `phpinfo_as_text` for `-i`; php-cgi has no option or INI
//! entry for it and always prints HTML. The HTML is written by the same functions
//! of PHP's `ext/standard/info.c` that write the text, so each of their HTML forms
//! is turned back into its text form here:
//!
//! | `info.c` writes                | HTML                                     | text                          |
//! |--------------------------------|------------------------------------------|-------------------------------|
//! | `php_info_print_table_start`   | `<table>`                                | an empty line                 |
//! | `php_info_print_table_header`  | `<tr class="h"><th>A</th><th>B</th></tr>` | `A => B`                     |
//! | `..._table_colspan_header`     | `<th colspan="2">A</th>`                 | `A` centred in 74 columns     |
//! | `php_info_print_table_row`     | `<td class="e">A </td>` (escaped, a space before `</td>`; empty: `<i>no value</i>`) | `A => B`, an empty cell is one space |
//! | `display_ini_entries`          | three cells with no space before `</td>` | `K => local => master`, `no value` |
//! | `$_SERVER`, `$_ENV` rows       | two such cells, arrays in `<pre>`        | `$_SERVER['K'] => V` (empty: nothing) |
//! | stream hashes                  | `Registered ...` in two such cells       | a newline, then `Registered ... => V` |
//! | a module's section, `SECTION`  | `<h2>`, `<h1>`                           | an empty line, then the name |
//! | `php_info_print_box_start(0)`  | `<tr class="v"><td>`, `<br />`            | an empty line, newlines     |
//! | `php_info_print_hr`            | `<hr />`                                 | a line of underscores         |
//!
//! The PHP logo box becomes `PHP Version => X`, the credits keep their text order,
//! and the licence, worded for each layout in `info.c`, is PHP's text wording.
//! Values keep what PHP's text keeps: the `<font>` tags of the `highlight.*`
//! directives (their displayer prints them in both layouts), entities decoded.

/// `php_info_print_hr` in text.
const HR: &str = "\n\n _______________________________________________________________________\n\n";

/// The licence as `php_print_info` words it in text (the HTML wraps it in paragraphs).
const LICENSE: &str = "\nPHP License
This program is free software; you can redistribute it and/or modify
it under the terms of the PHP License as published by the PHP Group
and included in the distribution in the file:  LICENSE

This program is distributed in the hope that it will be useful,
but WITHOUT ANY WARRANTY; without even the implied warranty of
MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.

If you did not receive a copy of the PHP license, or have any
questions about PHP licensing, please contact license@php.net.
";

/// How `php_info_print_box_start(1)` starts the PHP logo's box (`phpinfo_as_text` skips it).
const LOGO_BOX: &str = "<tr class=\"h\"><td>";

/// What `php_info_print_table_row` prints in HTML for an empty cell.
const EMPTY_CELL: &str = "<i>no value</i>";

/// php-cgi's `-i` (HTML) as PHP prints it with `phpinfo_as_text`.
pub(crate) fn to_text(html: &str) -> String {
    let mut out = String::from("phpinfo()\n");
    let mut rest = html;
    while let Some((_, tag, next)) = next_tag(rest) {
        rest = next;
        match tag_name(tag) {
            "head" => rest = after(rest, "</head>"),
            // The PHP logo's box is HTML only: in text, its row is no table of its own.
            "table" if !rest.trim_start().starts_with(LOGO_BOX) => out.push('\n'),
            "hr" => out.push_str(HR),
            "h1" => {
                let (inner, next) = until(rest, "</h1>");
                rest = next;
                out.push_str(&heading1(&plain(inner)));
            }
            "h2" => {
                let (inner, next) = until(rest, "</h2>");
                rest = next;
                match plain(inner).as_str() {
                    "PHP License" => {
                        out.push_str(LICENSE);
                        rest = after(rest, "</table>");
                    }
                    name => out.push_str(&format!("\n{name}\n")),
                }
            }
            "tr" => {
                let (inner, next) = until(rest, "</tr>");
                rest = next;
                row(&mut out, attribute(tag, "class"), inner);
            }
            _ => {}
        }
    }
    out
}

/// An `<h1>`: the section headings (`SECTION` in `info.c`) and the credits' title.
fn heading1(text: &str) -> String {
    match text {
        "PHP Credits" => "PHP Credits\n".into(),
        _ => format!("\n{text}\n"),
    }
}

/// One `<tr>` of class `class` with its cells `inner`, appended in text.
fn row(out: &mut String, class: Option<&str>, inner: &str) {
    let cells = cells(inner);
    let all = |f: fn(&Cell) -> bool| !cells.is_empty() && cells.iter().all(f);
    match (class, cells.as_slice()) {
        (Some("h"), [cell]) if !cell.header => out.push_str(&logo(inner)),
        // php_info_print_box_start(0): the Zend engine's box and the modules' notes.
        (Some("v"), [cell]) if !cell.header => {
            out.push('\n');
            out.push_str(&boxed(cell.inner));
        }
        (_, [one]) if one.header && one.colspan.is_some() => out.push_str(&centered(&decode(one.inner))),
        _ if all(|c| c.header) => out.push_str(&header_row(&cells)),
        _ if all(|c| c.inner.ends_with(' ')) => table_row(out, &cells),
        (_, [one]) => out.push_str(&format!("{}\n", value(one.inner, ""))),
        (_, [key, v]) if key.inner.starts_with("Registered ") => {
            out.push_str(&format!("\n{} => {}", value(key.inner, ""), value(v.inner, "")));
        }
        (_, [key, v]) => out.push_str(&format!("{} => {}\n", value(key.inner, ""), value(v.inner, ""))),
        (_, [key, values @ ..]) => {
            let values = values.iter().map(|v| value(v.inner, "no value"));
            let row: Vec<String> = std::iter::once(value(key.inner, "")).chain(values).collect();
            out.push_str(&format!("{}\n", row.join(" => ")));
        }
        (_, []) => {}
    }
}

/// The PHP logo's box: its `<h1>` is the text's first row (`PHP Version => X`).
fn logo(inner: &str) -> String {
    let (_, h1) = inner.split_once("<h1").unwrap_or_default();
    let heading = plain(until(after(h1, ">"), "</h1>").0);
    match heading.strip_prefix("PHP Version ") {
        Some(version) => format!("PHP Version => {version}\n"),
        None => format!("{heading}\n"),
    }
}

/// `php_info_print_table_header` in text: the cells joined by ` => `, an empty one a space.
fn header_row(cells: &[Cell]) -> String {
    let texts: Vec<String> = cells.iter().map(|c| decode(c.inner)).collect();
    let texts: Vec<&str> = texts.iter().map(|t| if t.is_empty() { " " } else { t }).collect();
    format!("{}\n", texts.join(" => "))
}

/// `php_info_print_table_row` in text: non-empty cells joined by ` => `, an empty
/// cell printed as one space (with no ` => ` after it).
fn table_row(out: &mut String, cells: &[Cell]) {
    for (i, cell) in cells.iter().enumerate() {
        let inner = &cell.inner[..cell.inner.len() - 1];
        if inner.is_empty() || inner == EMPTY_CELL {
            out.push(' ');
            continue;
        }
        out.push_str(&value(inner, ""));
        if i + 1 < cells.len() {
            out.push_str(" => ");
        }
    }
    out.push('\n');
}

/// `php_info_print_table_colspan_header` in text: `printf("%*s%s%*s\n", n, " ", h, n, " ")`
/// with `n = (74 - strlen(h)) / 2`.
fn centered(header: &str) -> String {
    let width = ((74 - header.len() as i64) / 2).unsigned_abs() as usize;
    let pad = " ".repeat(width.max(1));
    format!("{pad}{header}{pad}\n")
}

/// One `<td>` or `<th>`.
struct Cell<'a> {
    header: bool,
    colspan: Option<&'a str>,
    inner: &'a str,
}

/// The cells of a row's HTML.
fn cells(mut rest: &str) -> Vec<Cell<'_>> {
    let mut found = Vec::new();
    while let Some((_, tag, next)) = next_tag(rest) {
        rest = next;
        let header = match tag_name(tag) {
            "td" => false,
            "th" => true,
            _ => continue,
        };
        let (inner, next) = until(rest, if header { "</th>" } else { "</td>" });
        rest = next;
        found.push(Cell { header, colspan: attribute(tag, "colspan"), inner });
    }
    found
}

/// A cell's value in text: `<i>no value</i>` alone is `empty`; `<br />` a newline;
/// the `<font>` tags kept (PHP's text has them too); other tags dropped; entities decoded.
fn value(inner: &str, empty: &str) -> String {
    if inner == EMPTY_CELL {
        return empty.into();
    }
    let mut text = String::new();
    let mut rest = inner;
    while let Some((before, tag, next)) = next_tag(rest) {
        text.push_str(&decode(before));
        match tag_name(tag) {
            "br" => text.push('\n'),
            "font" | "/font" => text.push_str(&format!("<{tag}>")),
            _ => {}
        }
        rest = next;
    }
    text.push_str(&decode(rest));
    text
}

/// A `php_info_print_box_start(0)` box in text: the HTML's own line breaks and the
/// logos' links dropped, `<br />` a newline.
fn boxed(inner: &str) -> String {
    value(&without(inner, "<a ", "</a>").replace('\n', ""), "")
}

/// The text of some HTML with its tags dropped and entities decoded.
fn plain(html: &str) -> String {
    decode(&without(html, "<", ">"))
}

/// `text` without each span from `open` to the next `close` (both included).
fn without(text: &str, open: &str, close: &str) -> String {
    let mut kept = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(open) {
        kept.push_str(&rest[..start]);
        rest = after(&rest[start..], close);
    }
    kept.push_str(rest);
    kept
}

/// Decodes what PHP's escaping writes: `htmlspecialchars` (`&amp;`, `&lt;`, `&gt;`,
/// `&quot;`, `&#039;`), `zend_html_puts`'s `&nbsp;`, and numeric references. An
/// unknown entity stays as it is.
fn decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let entity = rest.find(';').filter(|&end| end <= 10).map(|end| (&rest[1..end], end));
        match entity.and_then(|(name, end)| Some((entity_char(name)?, end))) {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character an entity's name (between `&` and `;`) stands for.
fn entity_char(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some(' '),
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

/// The next tag of `html`: the text before it, what is between its `<` and `>`, and
/// what follows it; `None` when no tag is left.
fn next_tag(html: &str) -> Option<(&str, &str, &str)> {
    let open = html.find('<')?;
    let close = open + html[open..].find('>')?;
    Some((&html[..open], &html[open + 1..close], &html[close + 1..]))
}

/// A tag's name (`tr` in `tr class="h"`, `/td`, `br` in `br /`).
fn tag_name(tag: &str) -> &str {
    tag.split([' ', '\n', '/']).find(|s| !s.is_empty()).map_or("", |name| {
        if tag.starts_with('/') {
            // From the slash to the name's end (blanks may come between: no
            // tag of PHP's, and the name may be any text).
            &tag[..tag.len() - tag.trim_start_matches([' ', '\n', '/']).len() + name.len()]
        } else {
            name
        }
    })
}

/// The value of attribute `name` in a tag (`name="value"`).
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag[start..].find('"').map(|end| &tag[start..start + end])
}

/// What comes before `end` in `text` and what comes after it (all of `text` and
/// nothing when `end` is missing).
fn until<'a>(text: &'a str, end: &str) -> (&'a str, &'a str) {
    match text.find(end) {
        Some(i) => (&text[..i], &text[i + end.len()..]),
        None => (text, ""),
    }
}

/// What comes after `end` in `text` (nothing when `end` is missing).
fn after<'a>(text: &'a str, end: &str) -> &'a str {
    until(text, end).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_row_joins_its_cells_and_an_empty_one_is_a_space() {
        let html = "<table>\n<tr><td class=\"e\">System </td><td class=\"v\">Linux &amp; co </td></tr>\n\
                    <tr><td class=\"e\">Empty </td><td class=\"v\"><i>no value</i> </td></tr>\n</table>\n";
        assert_eq!(to_text(html), "phpinfo()\n\nSystem => Linux & co\nEmpty =>  \n");
    }

    #[test]
    fn ini_rows_say_no_value_and_keep_the_highlight_colours() {
        let html = "<tr class=\"h\"><th>Directive</th><th>Local Value</th><th>Master Value</th></tr>\n\
            <tr><td class=\"e\">doc_root</td><td class=\"v\"><i>no value</i></td><td class=\"v\"><i>no value</i></td></tr>\n\
            <tr><td class=\"e\">sendmail_path</td><td class=\"v\">/usr/sbin/sendmail&nbsp;-t</td><td class=\"v\">x</td></tr>\n\
            <tr><td class=\"e\">highlight.html</td><td class=\"v\"><font style=\"color: #000000\">#000000</font></td>\
            <td class=\"v\"><font style=\"color: #000000\">#000000</font></td></tr>\n";
        assert_eq!(
            to_text(html),
            "phpinfo()\nDirective => Local Value => Master Value\ndoc_root => no value => no value\n\
             sendmail_path => /usr/sbin/sendmail -t => x\nhighlight.html => <font style=\"color: #000000\">#000000</font> \
             => <font style=\"color: #000000\">#000000</font>\n"
        );
    }

    #[test]
    fn variables_are_printed_raw_and_an_empty_one_is_nothing() {
        let html = "<tr><td class=\"e\">$_SERVER['PHP_SELF']</td><td class=\"v\"><i>no value</i></td></tr>\n\
            <tr><td class=\"e\">$_SERVER['argv']</td><td class=\"v\"><pre>Array\n(\n    [0] =&gt; -i\n)\n</pre></td></tr>\n";
        assert_eq!(
            to_text(html),
            "phpinfo()\n$_SERVER['PHP_SELF'] => \n$_SERVER['argv'] => Array\n(\n    [0] => -i\n)\n\n"
        );
    }

    #[test]
    fn stream_hashes_start_with_a_newline_and_do_not_end_with_one() {
        let html = "<tr><td class=\"e\">Registered PHP Streams</td><td class=\"v\">php, file</td></tr>\n</table>\n";
        assert_eq!(to_text(html), "phpinfo()\n\nRegistered PHP Streams => php, file");
    }

    #[test]
    fn sections_boxes_and_rules_are_laid_out_as_php_lays_them_out() {
        let html = "<!DOCTYPE html><html><head>\n<style>h1 {x}</style><title>t</title></head>\n<body>\
            <table>\n<tr class=\"h\"><td>\n<a href=\"http://www.php.net/\"><img src=\"data:x\" alt=\"PHP logo\" /></a>\
            <h1 class=\"p\">PHP Version 8.2.1</h1>\n</td></tr>\n</table>\n\
            <table>\n<tr class=\"v\"><td>\n<a href=\"http://www.zend.com/\"><img src=\"data:y\" /></a>\n\
            Engine:<br />Zend&nbsp;Engine&nbsp;v4<br /></td></tr>\n</table>\n<hr />\n<h1>Configuration</h1>\n\
            <h2><a name=\"module_core\" href=\"#module_core\">Core</a></h2>\n<h1>PHP Credits</h1>\n\
            <table>\n<tr class=\"h\"><th colspan=\"2\">PHP Authors</th></tr>\n</table>\n";
        let centred = format!("{0}PHP Authors{0}\n", " ".repeat(31));
        assert_eq!(
            to_text(html),
            format!(
                "phpinfo()\nPHP Version => 8.2.1\n\n\nEngine:\nZend Engine v4\n{HR}\nConfiguration\n\nCore\n\
                 PHP Credits\n\n{centred}"
            )
        );
    }

    #[test]
    fn the_licence_is_worded_as_in_text_and_nothing_of_its_box_stays() {
        let html = "<h2>PHP License</h2>\n<table>\n<tr class=\"v\"><td>\n<p>\nThis program is free\n</p>\n</td></tr>\n\
                    </table>\n</div></body></html>";
        assert_eq!(to_text(html), format!("phpinfo()\n{LICENSE}"));
    }

    #[test]
    fn a_long_centred_header_gets_one_space_each_side_at_least() {
        assert_eq!(centered(&"x".repeat(74)), format!(" {} \n", "x".repeat(74)));
        assert_eq!(centered(&"x".repeat(80)), format!("   {}   \n", "x".repeat(80)));
    }

    #[test]
    fn hostile_or_cut_html_never_panics() {
        // Tag names, closing tags with blanks before a multi-byte name, cut
        // tags, entities and cells: each form ends the text without a panic.
        let html = "</ \u{e9}t\u{e9}></\n\u{1f600}><tr></\t\u{e9}><td class=\"e\">\u{e9} </td><td>&#xD800;&#99999999999;&\u{e9};                    <th colspan=\"\u{e9}\">\u{e9}</th><h1>\u{e9}<h2>&amp<table><tr class=\"h\"><td><h1";
        for end in (0..=html.len()).filter(|&end| html.is_char_boundary(end)) {
            let _ = to_text(&html[..end]);
        }
        assert_eq!(tag_name("/ \u{e9}t\u{e9}"), "/ \u{e9}t\u{e9}");
        assert_eq!(tag_name("/td"), "/td");
    }

    #[test]
    fn entities_are_decoded_once_and_unknown_ones_kept() {
        assert_eq!(decode("&amp;nbsp; &#039;&#x41;&lt;&gt;&quot; &bogus; & x"), "&nbsp; 'A<>\" &bogus; & x");
    }
}
