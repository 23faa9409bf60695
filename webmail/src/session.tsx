/**
 * The signed-in session: who the user is (GET /api/auth/me), login, signup and logout. On
 * start a stored refresh token is exchanged silently, so a reload keeps the user signed in.
 */
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { api, onSessionEnded, publicApi, refreshSession, setTokens, storedRefreshToken, type Me, type TokenPair } from './api';
import { navigate } from './router';

interface SessionValue {
  /** null while signed out; undefined while the stored session is being restored. */
  me: Me | null | undefined;
  login: (email: string, password: string) => Promise<void>;
  signup: (companyName: string, email: string, password: string) => Promise<void>;
  logout: () => Promise<void>;
  reload: () => Promise<void>;
  /** After a password change: the server revoked the old tokens and sent new ones. */
  adoptTokens: (pair: TokenPair) => void;
}

const SessionContext = createContext<SessionValue | null>(null);

export function SessionProvider({ children }: { children: ReactNode }) {
  const [me, setMe] = useState<Me | null | undefined>(undefined);

  const reload = useCallback(async () => {
    setMe(await api<Me>('GET', '/api/auth/me'));
  }, []);

  useEffect(() => {
    onSessionEnded(() => {
      setMe(null);
      navigate('/login', { replace: true });
    });
    void (async () => {
      if (storedRefreshToken() && (await refreshSession())) {
        try {
          await reload();
          return;
        } catch {
          // fall through: signed out
        }
      }
      setMe(null);
    })();
  }, [reload]);

  const value = useMemo<SessionValue>(
    () => ({
      me,
      reload,
      async login(email, password) {
        setTokens(await publicApi<TokenPair>('POST', '/api/auth/login', { email, password }));
        await reload();
      },
      async signup(companyName, email, password) {
        setTokens(await publicApi<TokenPair>('POST', '/api/auth/signup', { company_name: companyName, email, password }));
        await reload();
      },
      async logout() {
        const token = storedRefreshToken();
        if (token) await api('POST', '/api/auth/logout', { refresh_token: token }).catch(() => undefined);
        setTokens(null);
        setMe(null);
        navigate('/login', { replace: true });
      },
      adoptTokens(pair) {
        setTokens(pair);
      },
    }),
    [me, reload],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionValue {
  const value = useContext(SessionContext);
  if (!value) throw new Error('useSession outside SessionProvider');
  return value;
}

/** The signed-in user's data; only for pages rendered behind the sign-in gate. */
export function useMe(): Me {
  const { me } = useSession();
  if (!me) throw new Error('useMe while signed out');
  return me;
}
