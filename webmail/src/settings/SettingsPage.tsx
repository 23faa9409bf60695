/**
 * Settings (`/settings`): the signed-in user's own password and outgoing SMTP server. Open to
 * every user (owners, admins and members alike); each section talks to its own endpoint.
 */
import './settings.css';
import { PasswordForm } from './PasswordForm';
import { SmtpSettingsForm } from './SmtpSettingsForm';

export function SettingsPage() {
  return (
    <div className="settings">
      <h1>Settings</h1>
      <PasswordForm />
      <SmtpSettingsForm />
    </div>
  );
}
