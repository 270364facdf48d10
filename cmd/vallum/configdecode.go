package main

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/spf13/cast"
	"github.com/spf13/viper"
)

// decodeConfig fills c from viper's merged settings, one key of the config
// struct at a time, with the conversions viper's Unmarshal makes (weakly
// typed: "8" for an int, "true" for a bool, "a,b" for a list). Not
// v.Unmarshal: that links mapstructure and its decode hooks, 115 KB of a
// static mipsle build, and the router builds must stay under 10 MB. Unknown
// keys of the file are refused before this (unknownKeys); the environment
// and the flags only ever set known keys.
func decodeConfig(v *viper.Viper, c *config) error {
	rv := reflect.ValueOf(c).Elem()
	t := rv.Type()
	for i := range t.NumField() {
		key := t.Field(i).Tag.Get("mapstructure")
		raw := v.Get(key)
		if key == "" || raw == nil {
			continue
		}
		if err := setField(rv.Field(i), raw); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

// setField converts raw to f's type: the five kinds the config struct has.
func setField(f reflect.Value, raw any) error {
	switch f.Kind() {
	case reflect.String:
		s, err := cast.ToStringE(raw)
		f.SetString(s)
		return err
	case reflect.Bool:
		b, err := cast.ToBoolE(raw)
		f.SetBool(b)
		return err
	case reflect.Int:
		n, err := cast.ToIntE(raw)
		f.SetInt(int64(n))
		return err
	case reflect.Uint32:
		n, err := cast.ToUint32E(raw)
		f.SetUint(uint64(n))
		return err
	case reflect.Slice:
		l, err := toStrings(raw)
		f.Set(reflect.ValueOf(l))
		return err
	}
	return fmt.Errorf("unsupported setting type %s", f.Type())
}

// toStrings reads a list: a YAML sequence, a flag's values, or one string
// split at commas (as viper's Unmarshal splits VALLUM_ALLOW="a,b"; topics
// are split at spaces before this, see topicsAsList).
func toStrings(raw any) ([]string, error) {
	switch x := raw.(type) {
	case []string:
		return x, nil
	case string:
		if x == "" {
			return []string{}, nil
		}
		return strings.Split(x, ","), nil
	case []any:
		l := make([]string, 0, len(x))
		for _, e := range x {
			s, err := cast.ToStringE(e)
			if err != nil {
				return nil, err
			}
			l = append(l, s)
		}
		return l, nil
	}
	return nil, fmt.Errorf("want a list of strings, not %T", raw)
}
