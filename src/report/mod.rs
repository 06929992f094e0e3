//! Output formats. Each writes to `&mut dyn Write` and knows nothing of the command line:
//! [`vmtouch`] is vmtouch 1.3.1's text byte for byte, [`json`] the versioned machine format,
//! [`human`] the modern commands' text.

pub mod human;
pub mod json;
pub mod vmtouch;
