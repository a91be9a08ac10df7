//! A local Azure Key Vault + AAD + IMDS + NMI emulator for tests, the demo and provider authors.
