//! Currency codes that ISO 4217 has withdrawn (its List Three, "historic denominations").
//!
//! Followed: ISO 4217 as amended up to and including **Amendment 178 (2025-02-27)**, which
//! withdrew CUC (effective 2021-01-01). The amendments before it that touch codes the
//! `iso_currency` crate still lists as current: 171–175 (SLL → SLE, 2022-07-01; SLL
//! withdrawn), 174 (HRK → EUR, 2023-01-01), 176 (ANG → XCG, 2025-03-31), 177 (ZWL → ZWG,
//! 2024-06-25). The older entries are the List Three codes most often still seen in data;
//! every one of them is also absent from the current list, and naming them here only
//! makes the 400 say "withdrawn" instead of "unknown". A code on this list is refused
//! even when `iso_currency` still knows it. Check a new amendment against this list when
//! bumping `iso_currency`.

/// Withdrawn ISO 4217 alphabetic codes (List Three), sorted.
pub const WITHDRAWN: &[&str] = &[
    "ADP", "AFA", "ANG", "AOK", "AON", "AOR", "ARA", "ARP", "ATS", "AZM", "BEF", "BGL", "BOP",
    "BRC", "BRE", "BRN", "BRR", "BYB", "BYR", "CSD", "CSK", "CUC", "CYP", "DDM", "DEM", "ECS",
    "EEK", "ESP", "FIM", "FRF", "GHC", "GRD", "GWP", "HRD", "HRK", "IEP", "ITL", "LTL", "LUF",
    "LVL", "MGF", "MRO", "MTL", "MXP", "MZM", "NLG", "PEI", "PLZ", "PTE", "ROL", "RUR", "SDD",
    "SIT", "SKK", "SLL", "SRG", "STD", "TMM", "TPE", "TRL", "VEB", "VEF", "YUM", "ZMK", "ZRN",
    "ZWD", "ZWL", "ZWN", "ZWR",
];

/// True when `code` (exactly as written) is a withdrawn ISO 4217 code.
pub fn is_withdrawn(code: &str) -> bool {
    WITHDRAWN.binary_search(&code).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_holds_three_letter_codes() {
        let mut sorted = WITHDRAWN.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, WITHDRAWN);
        for code in WITHDRAWN {
            assert!(
                code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()),
                "{code}"
            );
        }
    }

    #[test]
    fn recent_withdrawals_are_listed_and_their_successors_are_not() {
        for code in [
            "HRK", "SLL", "ZWL", "CUC", "ANG", "VEF", "MRO", "STD", "BYR",
        ] {
            assert!(is_withdrawn(code), "{code}");
        }
        for code in [
            "EUR", "SLE", "ZWG", "XCG", "VES", "MRU", "STN", "BYN", "CUP", "USD",
        ] {
            assert!(!is_withdrawn(code), "{code}");
        }
    }
}
