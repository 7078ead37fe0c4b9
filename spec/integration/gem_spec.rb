# frozen_string_literal: true

require "spec_helper"
require "open3"

# The user's path: `gem build` + `gem install --local`, then `require 'iodine'` from anywhere
# and the installed `iodine` executable serving an app. Builds the extension from scratch
# (about a minute).
RSpec.describe "the packaged gem" do
  before(:all) do
    @dir = Dir.mktmpdir("iodine-gem")
    @gem_home = File.join(@dir, "home")
    system_path = Gem.path.join(File::PATH_SEPARATOR)
    @env = { "GEM_HOME" => @gem_home, "GEM_PATH" => [@gem_home, system_path].join(File::PATH_SEPARATOR),
             "RUBYLIB" => nil, "RUBYOPT" => nil }
    out, status = Open3.capture2e("gem", "build", "iodine.gemspec", "--output", File.join(@dir, "iodine.gem"), chdir: ROOT)
    raise "gem build failed:\n#{out}" unless status.success?

    out, status = Open3.capture2e(@env, "gem", "install", "--local", "--no-document", File.join(@dir, "iodine.gem"), chdir: @dir)
    raise "gem install failed:\n#{out}" unless status.success?
  end

  after(:all) { FileUtils.rm_rf(@dir) if @dir }

  it "satisfies gem 'iodine', '~> 0.7' and loads from any directory" do
    out, status = Open3.capture2e(@env, RbConfig.ruby, "-e",
                                  "gem 'iodine', '~> 0.7'; require 'iodine'; puts Iodine::VERSION; puts $LOADED_FEATURES.grep(/iodine\\.so/)",
                                  chdir: Dir.tmpdir)
    expect(status).to be_success, out
    expect(out).to include("0.7.59").and include(@gem_home)
  end

  it "installs the iodine executable, which serves an app" do
    port = ServerProcess.free_port
    exe = File.join(@gem_home, "bin", "iodine")
    expect(File.executable?(exe)).to be(true)
    pid = Process.spawn(@env, exe, "-p", port.to_s, "-b", "127.0.0.1", File.join(ROOT, "examples", "hello.ru"),
                        chdir: Dir.tmpdir, out: File::NULL, err: File::NULL)
    Timeout.timeout(20) do
      TCPSocket.new("127.0.0.1", port).close
    rescue Errno::ECONNREFUSED
      sleep 0.1
      retry
    end
    expect(http_get(port, "/").body).to eq("Hello World!")
  ensure
    if pid
      Process.kill("TERM", pid)
      Process.wait(pid)
    end
  end
end
