/**
 * The "Add provider" form: name, type, enabled, priority, and the fields of the chosen type
 * (provider-fields.ts). Posts the flat body POST /api/providers expects. Secret inputs are
 * password fields that are emptied after every attempt, so a key never lingers in the page.
 */
import { useState, type FormEvent } from 'react';
import { api } from '../api';
import { ErrorBanner, useAction } from '../ui';
import { PROVIDER_FIELDS, PROVIDER_TYPE_LABELS, providerFieldValues, type ProviderField } from './provider-fields';
import type { Provider, ProviderType } from './types';

const TYPES = Object.keys(PROVIDER_TYPE_LABELS) as ProviderType[];

export function ProviderForm({ onAdded }: { onAdded: (p: Provider) => void }) {
  const [name, setName] = useState('');
  const [type, setType] = useState<ProviderType>('sendgrid');
  const [enabled, setEnabled] = useState(true);
  const [priority, setPriority] = useState('100');
  const [values, setValues] = useState<Record<string, string | boolean>>({});
  const { busy, error, setError, run } = useAction();

  const clearSecrets = () =>
    setValues((v) => {
      const kept = { ...v };
      for (const f of PROVIDER_FIELDS[type]) if (f.kind === 'secret') delete kept[f.key];
      return kept;
    });

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const added = await run(async () => {
      const body = { name: name.trim(), provider_type: type, enabled, priority: Number(priority || '100'), ...providerFieldValues(type, values) };
      onAdded(await api<Provider>('POST', '/api/providers', body));
      setName('');
      setValues({});
    });
    if (!added) clearSecrets();
  };

  return (
    <form className="grid-form" aria-label="Add provider" noValidate onSubmit={(e) => void submit(e)}>
      <div className="field">
        <label htmlFor="provider-name">Name</label>
        <input id="provider-name" value={name} onChange={(e) => setName(e.target.value)} required autoComplete="off" />
      </div>
      <div className="field">
        <label htmlFor="provider-type">Provider type</label>
        <select
          id="provider-type"
          value={type}
          onChange={(e) => {
            setType(e.target.value as ProviderType);
            setValues({});
          }}
        >
          {TYPES.map((t) => (
            <option key={t} value={t}>
              {PROVIDER_TYPE_LABELS[t]}
            </option>
          ))}
        </select>
      </div>
      <div className="field">
        <label htmlFor="provider-priority">Priority</label>
        <input id="provider-priority" type="number" inputMode="numeric" min={0} max={10000} step={1} value={priority} onChange={(e) => setPriority(e.target.value)} />
      </div>
      <div className="field checkbox-field">
        <input id="provider-enabled" type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} />
        <label htmlFor="provider-enabled">Enabled</label>
      </div>
      {PROVIDER_FIELDS[type].map((f) => (
        <FieldInput key={`${type}-${f.key}`} field={f} value={values[f.key]} onChange={(v) => setValues((old) => ({ ...old, [f.key]: v }))} />
      ))}
      <div className="form-actions">
        <button type="submit" disabled={busy}>
          {busy ? 'Adding…' : 'Add provider'}
        </button>
      </div>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
    </form>
  );
}

function FieldInput({ field, value, onChange }: { field: ProviderField; value: string | boolean | undefined; onChange: (v: string | boolean) => void }) {
  const id = `provider-field-${field.key}`;
  const label = `${field.label}${field.required ? '' : ' (optional)'}`;
  const hintId = field.hint ? `${id}-hint` : undefined;
  const text = typeof value === 'string' ? value : '';
  if (field.kind === 'checkbox') {
    return (
      <div className="field checkbox-field">
        <input id={id} type="checkbox" checked={value === true} onChange={(e) => onChange(e.target.checked)} />
        <label htmlFor={id}>{field.label}</label>
      </div>
    );
  }
  let input;
  if (field.kind === 'select') {
    input = (
      <select id={id} value={text} onChange={(e) => onChange(e.target.value)}>
        <option value="">Default</option>
        {field.options?.map((o) => (
          <option key={o.value} value={o.value}>
            {o.label}
          </option>
        ))}
      </select>
    );
  } else if (field.kind === 'textarea') {
    input = <textarea id={id} rows={3} value={text} onChange={(e) => onChange(e.target.value)} aria-describedby={hintId} spellCheck={false} />;
  } else {
    input = (
      <input
        id={id}
        type={field.kind === 'secret' ? 'password' : field.kind === 'number' ? 'number' : 'text'}
        value={text}
        onChange={(e) => onChange(e.target.value)}
        placeholder={field.placeholder}
        autoComplete={field.kind === 'secret' ? 'new-password' : 'off'}
        spellCheck={false}
        aria-describedby={hintId}
      />
    );
  }
  return (
    <div className={`field${field.kind === 'textarea' ? ' wide' : ''}`}>
      <label htmlFor={id}>{label}</label>
      {input}
      {field.hint && (
        <small id={hintId} className="muted">
          {field.hint}
        </small>
      )}
    </div>
  );
}
