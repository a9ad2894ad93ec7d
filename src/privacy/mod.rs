//! Personal data primitives: phone numbers become a masked display form plus a keyed hash
//! before anything leaves the ingest process, and the people an operator names (numbers or
//! hashes) become the hashes to search for. A leaf: it imports nothing of the project, so
//! everything above can rely on it and nothing here can leak through another module.

pub mod calling_code;
pub mod detect;
pub mod hash;
pub mod mask;
pub mod person;

pub use hash::{IdKey, Pepper, PersonHash, Pseudonym};
pub use mask::{normalize, MaskedPhone};
pub use person::{hashes_of, Person, PersonError, PersonRef};
