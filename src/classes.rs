//! Reference devices and links that every figure is placed against.
//!
//! Figures are MB/s (10^6 B/s) of sequential throughput a user can expect, from the project's
//! design notes: vendor datasheets for SATA III and NVMe drives (the PCIe link ceiling in brackets)
//! and TCP goodput over Ethernet at MTU 1500 (about 94% of the line rate).

use std::fmt;

use serde::Serialize;

use crate::units::Rate;

/// A storage device class with its typical sequential throughput.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DeviceClass {
    pub name: &'static str,
    pub read_mb_s: f64,
    pub write_mb_s: f64,
}

/// A 7200 rpm hard disk, outer tracks.
pub const HDD: DeviceClass = DeviceClass {
    name: "HDD",
    read_mb_s: 200.0,
    write_mb_s: 200.0,
};
/// SATA III SSD: ~550 read / 520 write, the 6 Gb/s link caps it at 600.
pub const SATA_SSD: DeviceClass = DeviceClass {
    name: "SATA SSD",
    read_mb_s: 550.0,
    write_mb_s: 520.0,
};
/// NVMe on PCIe Gen3 x4: ~3,500 (3,940 raw link).
pub const NVME_GEN3_X4: DeviceClass = DeviceClass {
    name: "NVMe Gen3 x4",
    read_mb_s: 3500.0,
    write_mb_s: 3000.0,
};
/// NVMe on PCIe Gen4 x4: ~7,000 (7,880 raw link).
pub const NVME_GEN4_X4: DeviceClass = DeviceClass {
    name: "NVMe Gen4 x4",
    read_mb_s: 7000.0,
    write_mb_s: 6500.0,
};

/// Device classes, slowest first.
pub const DEVICES: [DeviceClass; 4] = [HDD, SATA_SSD, NVME_GEN3_X4, NVME_GEN4_X4];

/// A network link (or bus) class with the goodput a bulk TCP transfer gets from it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LinkClass {
    pub name: &'static str,
    pub goodput_mb_s: f64,
}

pub const GBE_1: LinkClass = LinkClass {
    name: "1 GbE",
    goodput_mb_s: 117.0,
};
pub const GBE_2_5: LinkClass = LinkClass {
    name: "2.5 GbE",
    goodput_mb_s: 294.0,
};
pub const GBE_10: LinkClass = LinkClass {
    name: "10 GbE",
    goodput_mb_s: 1170.0,
};
pub const GBE_25: LinkClass = LinkClass {
    name: "25 GbE",
    goodput_mb_s: 2900.0,
};
/// The seed's ConnectX-3 cards sat behind a PCIe Gen3 x4 riser: 3,940 MB/s raw caps them.
pub const PCIE_GEN3_X4_SLOT: LinkClass = LinkClass {
    name: "PCIe Gen3 x4 slot",
    goodput_mb_s: 3940.0,
};
pub const GBE_40: LinkClass = LinkClass {
    name: "40 GbE",
    goodput_mb_s: 4700.0,
};
pub const GBE_100: LinkClass = LinkClass {
    name: "100 GbE",
    goodput_mb_s: 11700.0,
};

/// Link classes, slowest first.
pub const LINKS: [LinkClass; 7] = [
    GBE_1,
    GBE_2_5,
    GBE_10,
    GBE_25,
    PCIE_GEN3_X4_SLOT,
    GBE_40,
    GBE_100,
];

/// Whether the disk was read or written, since devices write slower than they read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
}

/// Within this factor of a class's figure a rate counts as "that class".
const SAME_CLASS_TOLERANCE: f64 = 0.25;

/// Where a disk rate stands among the device classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "placement", rename_all = "snake_case")]
pub enum DevicePlacement {
    Like {
        class: &'static str,
        class_mb_s: f64,
    },
    Below {
        class: &'static str,
        class_mb_s: f64,
    },
    Between {
        lower: &'static str,
        lower_mb_s: f64,
        upper: &'static str,
        upper_mb_s: f64,
    },
    Above {
        class: &'static str,
        class_mb_s: f64,
    },
}

pub fn place_device(rate: Rate, access: Access) -> DevicePlacement {
    let mb = rate.mb_per_sec();
    let figure = |class: &DeviceClass| match access {
        Access::Read => class.read_mb_s,
        Access::Write => class.write_mb_s,
    };
    let nearest = DEVICES
        .iter()
        .min_by(|a, b| {
            let distance = |c: &&DeviceClass| (mb / figure(c)).ln().abs();
            distance(a).total_cmp(&distance(b))
        })
        .expect("DEVICES is not empty");
    if (mb / figure(nearest) - 1.0).abs() <= SAME_CLASS_TOLERANCE {
        return DevicePlacement::Like {
            class: nearest.name,
            class_mb_s: figure(nearest),
        };
    }
    let first = &DEVICES[0];
    let last = &DEVICES[DEVICES.len() - 1];
    if mb < figure(first) {
        return DevicePlacement::Below {
            class: first.name,
            class_mb_s: figure(first),
        };
    }
    if mb > figure(last) {
        return DevicePlacement::Above {
            class: last.name,
            class_mb_s: figure(last),
        };
    }
    let upper_index = DEVICES
        .iter()
        .position(|c| figure(c) > mb)
        .expect("mb is below the last class");
    let (lower, upper) = (&DEVICES[upper_index - 1], &DEVICES[upper_index]);
    DevicePlacement::Between {
        lower: lower.name,
        lower_mb_s: figure(lower),
        upper: upper.name,
        upper_mb_s: figure(upper),
    }
}

impl fmt::Display for DevicePlacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DevicePlacement::Like { class, .. } => write!(f, "{class} class"),
            DevicePlacement::Below { class, class_mb_s } => {
                write!(f, "slower than an {class} ({class_mb_s:.0} MB/s)")
            }
            DevicePlacement::Between { lower, upper, .. } => {
                write!(f, "between {lower} and {upper} class")
            }
            DevicePlacement::Above { class, class_mb_s } => {
                write!(f, "faster than {class} ({class_mb_s:.0} MB/s)")
            }
        }
    }
}

/// Which links a rate would fill: the fastest one it saturates and the next one it does not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkPlacement {
    pub saturates: Option<LinkClass>,
    pub short_of: Option<LinkClass>,
}

pub fn place_link(rate: Rate) -> LinkPlacement {
    let mb = rate.mb_per_sec();
    LinkPlacement {
        saturates: LINKS.iter().rev().find(|l| mb >= l.goodput_mb_s).copied(),
        short_of: LINKS.iter().find(|l| mb < l.goodput_mb_s).copied(),
    }
}

impl fmt::Display for LinkPlacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.saturates, &self.short_of) {
            (Some(full), Some(next)) => write!(
                f,
                "would saturate {} ({:.0} MB/s), not {} ({:.0} MB/s)",
                full.name, full.goodput_mb_s, next.name, next.goodput_mb_s
            ),
            (Some(full), None) => write!(f, "would saturate even {}", full.name),
            (None, Some(next)) => {
                write!(
                    f,
                    "would not fill {} ({:.0} MB/s)",
                    next.name, next.goodput_mb_s
                )
            }
            (None, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_near_a_class_figure_is_that_class() {
        let placed = place_device(Rate::from_mb_per_sec(2700.0), Access::Read);
        assert_eq!(placed.to_string(), "NVMe Gen3 x4 class");
        let placed = place_device(Rate::from_mb_per_sec(410.0), Access::Write);
        assert_eq!(placed.to_string(), "SATA SSD class");
    }

    #[test]
    fn a_rate_between_classes_names_both() {
        let placed = place_device(Rate::from_mb_per_sec(1500.0), Access::Read);
        assert_eq!(
            placed.to_string(),
            "between SATA SSD and NVMe Gen3 x4 class"
        );
    }

    #[test]
    fn rates_off_the_ends_are_below_or_above() {
        assert!(matches!(
            place_device(Rate::from_mb_per_sec(50.0), Access::Read),
            DevicePlacement::Below { class: "HDD", .. }
        ));
        assert!(matches!(
            place_device(Rate::from_mb_per_sec(20000.0), Access::Read),
            DevicePlacement::Above {
                class: "NVMe Gen4 x4",
                ..
            }
        ));
    }

    #[test]
    fn link_placement_names_the_link_filled_and_the_next() {
        let placed = place_link(Rate::from_mb_per_sec(2700.0));
        assert_eq!(placed.saturates, Some(GBE_10));
        assert_eq!(placed.short_of, Some(GBE_25));
        assert_eq!(place_link(Rate::from_mb_per_sec(50.0)).saturates, None);
        assert_eq!(place_link(Rate::from_mb_per_sec(50000.0)).short_of, None);
        assert!(
            place_link(Rate::from_mb_per_sec(400.0))
                .to_string()
                .starts_with("would saturate 2.5 GbE")
        );
    }
}
