package broker

import "errors"

// Check reports everything New would refuse in o, without binding a port or
// opening the store: the options, the users file, anonymous clients on a
// network listener, and the TLS files. `vallum check-config` calls it, so
// that a configuration it passes also starts.
func Check(o Options) error {
	o.ensureDefaults()
	errs := []error{o.validate()}
	if _, err := newAuth(o, newRefusals(o.Logger)); err != nil {
		errs = append(errs, err)
	}
	if o.hasKind(KindTLS) && o.TLSCert != "" && o.TLSKey != "" {
		if _, err := tlsConfig(o.TLSCert, o.TLSKey, o.TLSClientCA); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
