//! End-to-end tests of the driver's parts working together; the tests live in `tests/`, this
//! library is empty.
