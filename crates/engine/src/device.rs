//! Where a model runs (`--device`) and in what precision its GEMMs run (`--dtype`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// `--device`: `cpu`, `cuda` (the first GPU), `cuda:N`, or `auto` (a GPU when a CUDA driver
/// and a supported device are present and the model runs there, else the CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// This machine's cores.
    Cpu,
    /// NVIDIA GPU number N.
    Cuda(usize),
    /// The GPU when one is usable, else the CPU.
    #[default]
    Auto,
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Device, String> {
        let bad = || format!("unknown device {s:?}: cpu, cuda, cuda:N or auto");
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "auto" => Ok(Device::Auto),
            "cuda" | "gpu" => Ok(Device::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<u16>()
                    .map(|n| Device::Cuda(n as usize))
                    .map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
            Device::Auto => f.write_str("auto"),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Device, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// `--dtype`: the GEMM operand type. Accumulation, norms and softmax are fp32 in every case.
/// The command line and config files take the same spellings (`FromStr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// fp32 (the reference scores; the only one the CPU runs).
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16 (the GPU default).
    Bf16,
}

impl Dtype {
    /// The name on the command line and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
        }
    }
}

impl FromStr for Dtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Dtype, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Dtype::F32),
            "f16" | "fp16" | "float16" => Ok(Dtype::F16),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            _ => Err(format!("unknown dtype {s:?}: f32, f16 or bf16")),
        }
    }
}

impl Serialize for Dtype {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Dtype {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dtype, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::{Device, Dtype};

    #[test]
    fn devices_parse_and_print_as_the_command_line_writes_them() {
        for (s, d) in [
            ("cpu", Device::Cpu),
            ("auto", Device::Auto),
            ("cuda", Device::Cuda(0)),
            ("cuda:3", Device::Cuda(3)),
            ("CUDA:1", Device::Cuda(1)),
        ] {
            assert_eq!(s.parse::<Device>(), Ok(d), "{s}");
        }
        assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
        for bad in ["cuda:", "cuda:-1", "cuda:x", "tpu", "cuda:99999999"] {
            let e = bad.parse::<Device>().unwrap_err();
            assert!(e.contains("cpu, cuda, cuda:N or auto"), "{bad}: {e}");
        }
        let d: Device = serde_json::from_str("\"cuda:1\"").unwrap();
        assert_eq!(d, Device::Cuda(1));
        assert!(serde_json::from_str::<Device>("\"gpu7\"").is_err());
    }

    #[test]
    fn dtypes_parse_with_their_common_spellings() {
        assert_eq!("bf16".parse::<Dtype>(), Ok(Dtype::Bf16));
        assert_eq!("fp16".parse::<Dtype>(), Ok(Dtype::F16));
        assert_eq!("float32".parse::<Dtype>(), Ok(Dtype::F32));
        assert!("int4"
            .parse::<Dtype>()
            .unwrap_err()
            .contains("f32, f16 or bf16"));
        assert_eq!(Dtype::Bf16.to_string(), "bf16");
        let d: Dtype = serde_json::from_str("\"fp16\"").unwrap();
        assert_eq!(d, Dtype::F16);
        assert_eq!(serde_json::to_string(&Dtype::Bf16).unwrap(), "\"bf16\"");
    }
}
