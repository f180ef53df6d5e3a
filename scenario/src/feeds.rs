//! Data feeds: CSV files whose rows parameterize VUs (LoadRunner's parameter files). The file
//! travels in the bundle; every agent parses the same bytes, so a row number means the same row
//! everywhere and `unique` rows are unique across the fleet (VU numbers are).

use rand::Rng;

/// How VUs take rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Each VU walks the rows from the top, one per iteration (or keeps the first, `per: vu`).
    Sequential,
    /// A random row each time.
    Random,
    /// Row N for VU number N: no two VUs of the fleet share a row.
    Unique,
}

/// When a VU takes a new row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    Iteration,
    Vu,
}

#[derive(Clone, Debug)]
pub struct Feed {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub order: Order,
    pub per: Per,
    /// `unique`: VUs past the last row start over from the top instead of failing.
    pub wrap: bool,
}

impl Feed {
    /// Parses CSV with a header row; every row must have every column.
    pub fn parse(bytes: &[u8], delimiter: u8) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .from_reader(bytes);
        let columns: Vec<String> = reader
            .headers()
            .map_err(|error| format!("cannot read the header row: {error}"))?
            .iter()
            .map(|column| column.trim().to_owned())
            .collect();
        if columns.is_empty() || columns.iter().any(String::is_empty) {
            return Err("the first row must name every column".into());
        }
        let mut rows = Vec::new();
        for (index, record) in reader.records().enumerate() {
            let record = record.map_err(|error| format!("row {}: {error}", index + 2))?;
            rows.push(record.iter().map(str::to_owned).collect());
        }
        if rows.is_empty() {
            return Err("the file has a header row but no data rows".into());
        }
        Ok((columns, rows))
    }

    /// The row VU `vu` uses in its iteration `vu_iteration`, or `None` when `unique` rows ran out.
    pub fn row(&self, vu: u64, vu_iteration: u64) -> Option<&[String]> {
        let count = self.rows.len() as u64;
        let step = match self.per {
            Per::Iteration => vu_iteration,
            Per::Vu => 0,
        };
        let index = match self.order {
            Order::Sequential => step % count,
            Order::Random => rand::rng().random_range(0..count),
            Order::Unique => {
                if vu >= count && !self.wrap {
                    return None;
                }
                vu % count
            }
        };
        self.rows.get(index as usize).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(order: Order, per: Per, wrap: bool) -> Feed {
        let (columns, rows) = Feed::parse(b"name,token\nann,t1\nbob,t2\ncid,t3\n", b',').unwrap();
        Feed {
            name: "users".into(),
            columns,
            rows,
            order,
            per,
            wrap,
        }
    }

    #[test]
    fn parses_header_and_rows() {
        let feed = feed(Order::Sequential, Per::Iteration, false);
        assert_eq!(feed.columns, ["name", "token"]);
        assert_eq!(feed.rows.len(), 3);
        assert!(Feed::parse(b"a,b\n1\n", b',').is_err());
        assert!(Feed::parse(b"a,b\n", b',').is_err());
        assert_eq!(Feed::parse(b"a;b\n1;2\n", b';').unwrap().1, vec![vec!["1", "2"]]);
    }

    #[test]
    fn orders() {
        let sequential = feed(Order::Sequential, Per::Iteration, false);
        let names: Vec<&str> = (0..4).map(|i| sequential.row(9, i).unwrap()[0].as_str()).collect();
        assert_eq!(names, ["ann", "bob", "cid", "ann"]);
        let per_vu = feed(Order::Sequential, Per::Vu, false);
        assert_eq!(per_vu.row(9, 2).unwrap()[0], "ann");
        let unique = feed(Order::Unique, Per::Vu, false);
        assert_eq!(unique.row(1, 5).unwrap()[0], "bob");
        assert!(unique.row(3, 0).is_none());
        let wrapping = feed(Order::Unique, Per::Vu, true);
        assert_eq!(wrapping.row(4, 0).unwrap()[0], "bob");
        let random = feed(Order::Random, Per::Iteration, false);
        assert!(random.row(0, 0).is_some());
    }
}
